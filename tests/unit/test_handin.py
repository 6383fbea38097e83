"""The kernel's hand-in and the judge: same verdicts as the checks, and forged files rejected."""

import json
import os
from dataclasses import asdict

import pytest
import torch
import torch.nn as nn
import torchvision

from autograder import artifact, checks, handin, judge
from autograder.trace import trace_program
from tests.casefiles import FINETUNE_CASES, VGG11_CASES, load_case
from tests.mutants import systematic_mutants

VGG11_CELLS = (checks.LAYERS, checks.POOL_SHAPES, checks.CLASSIFIER)


@pytest.fixture
def handin_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(handin.HANDIN_DIR_VARIABLE, str(tmp_path))
    # Each test judges its records afresh, as the judge does for each notebook.
    monkeypatch.setattr(judge, "_analyses_by_record", {})
    return tmp_path


def _outcome(verdict):
    return "pass" if verdict["status"] == "judged" and not verdict["findings"] else "fail"


@pytest.mark.parametrize("path", VGG11_CASES, ids=lambda path: path.stem)
def test_judge_vgg11_case(handin_dir, path):
    case = load_case(path)
    for cell in VGG11_CELLS:
        handin.hand_in(cell, case.VGG11)

    verdicts = judge.judge_folder(handin_dir, VGG11_CELLS)

    assert {cell: _outcome(verdict) for cell, verdict in verdicts.items()} == case.EXPECTED, verdicts


@pytest.mark.parametrize("path", FINETUNE_CASES, ids=lambda path: path.stem)
def test_judge_finetune_case(handin_dir, path):
    case = load_case(path)
    handin.hand_in(checks.FINETUNE, case.model_finetune)

    verdict = judge.judge_cell(handin_dir, checks.FINETUNE)

    assert _outcome(verdict) == case.EXPECTED[checks.FINETUNE], verdict


def test_hand_in_without_folder_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv(handin.HANDIN_DIR_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    handin.hand_in(checks.LAYERS, nn.Module)
    assert list(tmp_path.iterdir()) == []


def test_hand_in_records_build_error(handin_dir):
    class Broken(nn.Module):
        def __init__(self, num_classes=10):
            raise NotImplementedError()

    handin.hand_in(checks.LAYERS, Broken)

    verdict = judge.judge_cell(handin_dir, checks.LAYERS)
    assert [finding["key"] for finding in verdict["findings"]] == ["build.error"]


# A model whose forward raises at fc1 hands in programs of the part before the error.
CRASH_CASE = next(path for path in VGG11_CASES if path.stem == "fail_view_merges_batch_crash")


def _hand_in_all(handin_dir, model_cls):
    for cell in VGG11_CELLS:
        handin.hand_in(cell, model_cls)
    return {cell: json.loads((handin_dir / f"{cell}.json").read_text(encoding="utf-8")) for cell in VGG11_CELLS}


def _write_records(handin_dir, records):
    for cell, record in records.items():
        (handin_dir / f"{cell}.json").write_text(json.dumps(record), encoding="utf-8")


def test_hand_in_crash_sends_programs(handin_dir):
    records = _hand_in_all(handin_dir, load_case(CRASH_CASE).VGG11)

    model = records[checks.LAYERS]["models"]["default"]
    assert model["crashed"] is True
    assert model["train"] is not None
    assert model["eval"] is not None
    assert model["failed_ops"]["train"]["kind"] == "linear"


def test_judge_ignores_crash_ops_without_program(handin_dir):
    records = _hand_in_all(handin_dir, load_case(CRASH_CASE).VGG11)
    for record in records.values():
        model = record["models"]["default"]
        ops = trace_program(artifact.load_program(model["train"]))
        model["ops"] = [asdict(op) for op in ops] + [model["failed_ops"]["train"]]
        model["train"] = model["eval"] = None
    _write_records(handin_dir, records)

    verdicts = judge.judge_folder(handin_dir, VGG11_CELLS)

    assert {cell: _outcome(verdict) for cell, verdict in verdicts.items()} == dict.fromkeys(VGG11_CELLS, "fail")


def test_judge_crash_without_eval_program(handin_dir):
    records = _hand_in_all(handin_dir, load_case(CRASH_CASE).VGG11)
    for record in records.values():
        record["models"]["default"]["eval"] = None
    _write_records(handin_dir, records)

    verdict = judge.judge_cell(handin_dir, checks.LAYERS)

    assert [finding["key"] for finding in verdict["findings"]] == ["features.not_compared"]


def test_judge_crash_compares_features(handin_dir):
    class ScaledThenCrash(load_case(CRASH_CASE).VGG11):
        """The right layers, but the feature map leaving block 1 is doubled, and fc1 then raises."""

        def forward(self, x):
            x = self.features[4:](self.features[:4](x) * 2)
            return self.classifier(x.view(-1, 512))

    _hand_in_all(handin_dir, ScaledThenCrash)

    verdicts = judge.judge_folder(handin_dir, VGG11_CELLS)

    assert [finding["key"] for finding in verdicts[checks.LAYERS]["findings"]] == ["features.not_equivalent"]
    assert _outcome(verdicts[checks.POOL_SHAPES]) == "pass"


def test_judge_rejects_missing_eval_program(handin_dir):
    passing = next(path for path in VGG11_CASES if path.stem == "pass_functional_style")
    records = _hand_in_all(handin_dir, load_case(passing).VGG11)
    records[checks.LAYERS]["models"]["default"]["eval"] = None
    _write_records(handin_dir, records)

    assert judge.judge_cell(handin_dir, checks.LAYERS)["status"] == "invalid"


# Records edited after an honest hand-in: the judge must read what the programs compute.
POOL_NOT_APPLIED = next(path for path in VGG11_CASES if path.stem == "fail_pool_not_applied")
FLATTEN_CHANNELS_LAST = next(path for path in VGG11_CASES if path.stem == "fail_flatten_channels_last")


def test_judge_recomputes_claimed_shapes(handin_dir):
    records = _hand_in_all(handin_dir, load_case(POOL_NOT_APPLIED).VGG11)
    graph = records[checks.POOL_SHAPES]["models"]["default"]["train"]["graph"]["graph_module"]["graph"]
    adaptive = next(node for node in graph["nodes"] if "adaptive_avg_pool2d" in node["target"])
    source = adaptive["inputs"][0]["arg"]["as_tensor"]["name"]
    graph["tensor_values"][source]["sizes"][2:] = [{"as_int": 7}, {"as_int": 7}]  # really 14x14
    _write_records(handin_dir, records)

    verdict = judge.judge_cell(handin_dir, checks.POOL_SHAPES)

    assert [finding["key"] for finding in verdict["findings"]] == ["pools.no_pool"], verdict


def test_judge_classifier_train_program_as_eval(handin_dir):
    records = _hand_in_all(handin_dir, load_case(FLATTEN_CHANNELS_LAST).VGG11)
    for model in records[checks.CLASSIFIER]["models"].values():
        model["eval"] = model["train"]
    _write_records(handin_dir, records)

    verdict = judge.judge_cell(handin_dir, checks.CLASSIFIER)

    assert _outcome(verdict) == "fail", verdict


def test_judge_compares_train_mode(handin_dir):
    class ZeroInTraining(load_case(CRASH_CASE).VGG11):
        """Right in eval mode, but the feature map leaving block 1 is zeroed in train mode."""

        def forward(self, x):
            x = self.features[:4](x)
            x = self.features[4:](x * 0 if self.training else x)
            return self.classifier(torch.flatten(x, 1))

    _hand_in_all(handin_dir, ZeroInTraining)

    verdict = judge.judge_cell(handin_dir, checks.LAYERS)

    assert [finding["key"] for finding in verdict["findings"]] == ["features.train_not_equivalent"], verdict


def test_judge_rejects_costly_program(handin_dir, monkeypatch):
    _hand_in_all(handin_dir, load_case(CRASH_CASE).VGG11)
    monkeypatch.setattr(artifact, "MAX_FLOP_PER_SAMPLE", 1e6)

    verdict = judge.judge_cell(handin_dir, checks.LAYERS)

    assert verdict["status"] == "invalid"
    assert "floating-point operations" in verdict["detail"]


def test_judge_rejects_many_constants(handin_dir, monkeypatch):
    class WithConstant(load_case(CRASH_CASE).VGG11):
        """Keeps a plain tensor attribute, which torch.export hands in as a tensor constant."""

        def __init__(self, num_classes=10):
            super().__init__(num_classes)
            self.scale = torch.ones(1, 3, 1, 1)

        def forward(self, x):
            return super().forward(x * self.scale)

    _hand_in_all(handin_dir, WithConstant)
    monkeypatch.setattr(artifact, "MAX_TOTAL_CONSTANT_ELEMENTS", 2)

    verdict = judge.judge_cell(handin_dir, checks.LAYERS)

    assert verdict["status"] == "invalid"
    assert "constants" in verdict["detail"]


def test_judge_missing_file(tmp_path):
    assert judge.judge_cell(tmp_path, checks.LAYERS) == {"status": "missing"}


@pytest.mark.parametrize("content", ["not json", "[]", '{"error": "boom"}', '{"kind": "finetune"}'])
def test_judge_malformed_file(tmp_path, content):
    (tmp_path / f"{checks.LAYERS}.json").write_text(content, encoding="utf-8")
    assert judge.judge_cell(tmp_path, checks.LAYERS)["status"] == "invalid"


def test_judge_rejects_symlink(tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"kind": "vgg11", "models": {}}), encoding="utf-8")
    folder = tmp_path / "handin"
    folder.mkdir()
    os.symlink(secret, folder / f"{checks.LAYERS}.json")

    verdict = judge.judge_cell(folder, checks.LAYERS)

    assert verdict["status"] == "invalid"


def test_judge_rejects_facts_without_program(tmp_path):
    record = {"kind": "finetune", "facts": {"module": True, "vgg": True, "head": ["Linear", 4096, 10], "parameters": []}}
    (tmp_path / f"{checks.FINETUNE}.json").write_text(json.dumps(record), encoding="utf-8")
    assert judge.judge_cell(tmp_path, checks.FINETUNE)["status"] == "invalid"


# artifact: what load_program accepts.

class _Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.register_buffer("scale", torch.tensor([2.0]), persistent=False)

    def forward(self, x):
        return torch.relu(self.conv(x)) * torch.tensor([0.5, 0.25, 1.0, 2.0]).view(1, 4, 1, 1)


@pytest.fixture(scope="module")
def small_document():
    program = torch.export.export(_Small().eval(), (torch.randn(1, 3, 8, 8),), strict=False)
    return json.loads(json.dumps(artifact.dump_program(program)))


def test_artifact_round_trip(small_document):
    program = artifact.load_program(small_document)
    targets = [str(node.target) for node in program.graph.nodes if node.op == "call_function"]
    assert "aten.conv2d.default" in targets


def test_artifact_parameters_on_meta(small_document):
    program = artifact.load_program(small_document)
    assert all(tensor.is_meta for tensor in program.state_dict.values())


def _first_node(document):
    return document["graph"]["graph_module"]["graph"]["nodes"][0]


@pytest.mark.parametrize("target", ["torch.save", "torch.ops.aten.from_file.default", "builtins.eval",
                                    "torch.ops.higher_order.cond"])
def test_artifact_rejects_target(small_document, target):
    _first_node(small_document)["target"] = target
    with pytest.raises(artifact.UnsafeProgram):
        artifact.load_program(small_document)


def test_artifact_rejects_symbolic_expression(small_document):
    _first_node(small_document)["inputs"].append({"name": "x", "arg": {"as_sym_int": {"as_expr": {"expr_str": "1"}}}})
    with pytest.raises(artifact.UnsafeProgram):
        artifact.load_program(small_document)


def test_artifact_rejects_range_constraints(small_document):
    small_document["graph"]["range_constraints"] = {"__import__('os')": {"min_val": 0, "max_val": 1}}
    with pytest.raises(artifact.UnsafeProgram):
        artifact.load_program(small_document)


def test_artifact_rejects_custom_object_input(small_document):
    specs = small_document["graph"]["graph_module"]["signature"]["input_specs"]
    specs.append({"custom_obj": {"arg": {"name": "obj"}, "custom_obj_name": "obj"}})
    with pytest.raises(artifact.UnsafeProgram):
        artifact.load_program(small_document)


# A sample of the systematic mutants (tests/mutants.py) judged from their hand-in, not in their kernel.
MUTANT_SAMPLE = systematic_mutants()[::12]


@pytest.mark.parametrize("mutant", MUTANT_SAMPLE, ids=lambda model: model.name)
def test_judge_mutant_caught(handin_dir, mutant):
    model_cls = mutant.build_class()
    for cell in VGG11_CELLS:
        handin.hand_in(cell, model_cls)

    verdicts = judge.judge_folder(handin_dir, VGG11_CELLS)

    failing = {cell for cell, verdict in verdicts.items() if _outcome(verdict) == "fail"}
    assert set(mutant.failing) <= failing, f"{mutant.name}: {verdicts}"


class _ZeroOutput(torchvision.models.VGG):
    """torchvision's VGG11 with the 10-class head, whose output is multiplied by 0, so no classifier
    weight gets a gradient."""

    def forward(self, x):
        return super().forward(x) * 0


def _meta_vgg11(model_class=torchvision.models.VGG):
    """Build torchvision's VGG11 on the meta device, with features frozen and classifier[6] = Linear(4096, 10)."""
    with torch.device("meta"):
        model = model_class(torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["A"]), num_classes=10)
    for parameter in model.features.parameters():
        parameter.requires_grad = False
    return model


def test_judge_finetune_step_without_gradient(handin_dir):
    handin.hand_in(checks.FINETUNE, _meta_vgg11(_ZeroOutput))

    verdict = judge.judge_cell(handin_dir, checks.FINETUNE)

    assert [finding["key"] for finding in verdict["findings"]] == ["finetune.step_classifier_unchanged"], verdict


class _SmallVGG(nn.Module):
    """A model with features and a 7-layer classifier whose last layer is Linear(4096, 10), but not VGG11."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1))
        self.classifier = nn.Sequential(*[nn.Identity() for _ in range(6)], nn.Linear(4096, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(x, 1)[:, :4096])


def test_judge_finetune_not_vgg11(handin_dir):
    model = _SmallVGG()
    model.features.requires_grad_(False)
    handin.hand_in(checks.FINETUNE, model)

    verdict = judge.judge_cell(handin_dir, checks.FINETUNE)

    assert [finding["key"] for finding in verdict["findings"]] == ["finetune.not_vgg"], verdict


def test_judge_rejects_fifo(tmp_path):
    os.mkfifo(tmp_path / f"{checks.LAYERS}.json")
    assert judge.judge_cell(tmp_path, checks.LAYERS)["status"] == "invalid"
