"""The graded checks on hand-written cases, named variants and named mutants."""

import pytest
import torch.nn as nn

from autograder import checks, messages, selfcheck
from autograder.verdict import CheckFailed
from tests.casefiles import FINETUNE_CASES, VGG11_CASES, load_case
from tests.mutants import ALL_CHECKS, NAMED_MUTANTS, VARIANTS

FINDINGS = {
    checks.LAYERS: checks.layer_findings,
    checks.POOL_SHAPES: checks.pool_findings,
    checks.CLASSIFIER: checks.classifier_findings,
}


def _failing(model_cls, hidden=True):
    return {check: findings for check in ALL_CHECKS if (findings := FINDINGS[check](model_cls, hidden=hidden))}


@pytest.mark.parametrize("path", VGG11_CASES, ids=lambda path: path.stem)
def test_case_outcome(path):
    case = load_case(path)
    failing = _failing(case.VGG11)
    outcome = {check: "fail" if check in failing else "pass" for check in ALL_CHECKS}
    assert outcome == case.EXPECTED, {check: [f.message for f in found] for check, found in failing.items()}


@pytest.mark.parametrize("path", FINETUNE_CASES, ids=lambda path: path.stem)
def test_finetune_case_outcome(path):
    case = load_case(path)
    findings = checks.finetune_findings(case.model_finetune, hidden=True)
    assert ("fail" if findings else "pass") == case.EXPECTED["test_finetune_frozen"], [f.message for f in findings]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda model: model.name)
def test_variant_passes(variant):
    failing = _failing(variant.build_class())
    assert not failing, {check: [f.message for f in found] for check, found in failing.items()}


@pytest.mark.parametrize("mutant", NAMED_MUTANTS, ids=lambda model: model.name)
def test_mutant_fails_in_its_cells(mutant):
    failing = _failing(mutant.build_class())
    assert set(failing) == set(mutant.failing), {check: [f.message for f in found] for check, found in failing.items()}


@pytest.mark.parametrize("mutant", NAMED_MUTANTS, ids=lambda model: model.name)
def test_mutant_reason_key(mutant):
    failing = _failing(mutant.build_class())
    first = failing[mutant.failing[0]][0]
    assert first.key == mutant.key, first.message


class Raises(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        raise NotImplementedError()


class ReturnsList(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.linear = nn.Linear(3, num_classes)

    def forward(self, x):
        return [self.linear(x.mean((2, 3)))]


class MovesToCuda(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.linear = nn.Linear(3, num_classes).cuda()


@pytest.mark.parametrize(("model_cls", "key"), [
    (Raises, "build.error"),
    (ReturnsList, "run.not_tensor"),
    (MovesToCuda, "build.cuda"),
    (None, "build.not_module"),
], ids=["init-raises", "forward-returns-list", "cuda-in-init", "not-a-class"])
def test_broken_model_reason(model_cls, key):
    findings = checks.layer_findings(model_cls)
    assert [finding.key for finding in findings] == [key]


def test_check_raises_check_failed():
    case = load_case(VGG11_CASES[0])
    with pytest.raises(CheckFailed) as raised:
        checks.check_vgg11_layers(case.VGG11)
    assert raised.value.findings[0].check == checks.LAYERS


def test_rendered_traceback_has_no_source():
    failure = CheckFailed(checks.LAYERS, checks.layer_findings(Raises))
    assert failure._render_traceback_() == [f"CheckFailed: {failure.render()}"]


def test_message_korean_by_default(monkeypatch):
    monkeypatch.delenv("AUTOGRADER_LANG", raising=False)
    finding = checks.pool_findings(NAMED_MUTANTS[4].build_class())[0]
    assert "기대" in finding.message


def test_message_english_by_setting(monkeypatch):
    monkeypatch.setenv("AUTOGRADER_LANG", "en")
    finding = checks.pool_findings(NAMED_MUTANTS[4].build_class())[0]
    assert "expected" in finding.message


def test_pool_message_names_pool_and_shapes(monkeypatch):
    monkeypatch.setenv("AUTOGRADER_LANG", "en")
    finding = checks.pool_findings(load_case(next(p for p in VGG11_CASES if "hidden_by_adaptive" in p.stem)).VGG11)[0]
    assert finding.message.startswith("Block 4 ends without pooling: after pool4 expected (N, 512, 14, 14), got (N, 512, 28, 28).")


class WholeClassifierReplaced(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3))
        self.classifier = nn.Sequential(nn.Linear(4096, 10))


@pytest.mark.parametrize(("model", "key"), [
    (None, "finetune.missing"),
    (nn.Linear(3, 3), "finetune.not_vgg"),
    (WholeClassifierReplaced(), "finetune.head"),
], ids=["none", "not-vgg", "whole-classifier-replaced"])
def test_finetune_broken_reason(model, key):
    findings = checks.finetune_findings(model)
    assert findings[0].key == key


def test_language_setting_rejects_unknown():
    with pytest.raises(ValueError):
        messages.set_language("fr")


def test_crash_in_classifier_reason(monkeypatch):
    monkeypatch.setenv("AUTOGRADER_LANG", "en")
    mutant = next(model for model in NAMED_MUTANTS if model.name == "padding0-without-adaptive-pool")
    finding = checks.classifier_findings(mutant.build_class())[0]
    assert finding.message.startswith("Input of fc1 (classifier[0]): expected (N, 25088), got (N, 4608).")


def test_shape_trace_shown_after_crash(capsys):
    mutant = next(model for model in NAMED_MUTANTS if model.name == "padding0-without-adaptive-pool")
    selfcheck.show_shape_trace(mutant.build_class())
    assert "(N, 64, 111, 111)" in capsys.readouterr().out


def test_empty_error_message_left_out(monkeypatch):
    monkeypatch.setenv("AUTOGRADER_LANG", "en")
    finding = checks.layer_findings(Raises)[0]
    assert finding.message == "VGG11() raised NotImplementedError. Check that __init__ is complete."
