"""Judge what the student's kernel handed in, in a process that never runs student code.

``python -P -m autograder.judge <hand-in folder>`` reads the ``<test cell>.json`` files that
``handin.hand_in`` wrote and rebuilds each model's analysis from them. Programs go through
``artifact.load_program``, which rejects anything that could run code. Then the judge runs the
checks of every test cell with ``hidden=True`` and prints one JSON object on standard output::

    {"test_vgg11_layers": {"status": "judged", "findings": [{"key": ..., "fields": {...}, ...}]},
     "test_finetune_frozen": {"status": "missing"}, ...}

``status`` is ``judged`` (no findings means the cell passes), ``missing`` (no file: the cell's hand-in
line never ran) or ``invalid`` (the file is not a hand-in that the judge accepts, and ``detail`` gives the reason).
The nbgrader preprocessor ``nbgrader_judge.JudgeHandIns`` turns this into the test cells' outputs.
Python's ``-P`` keeps the working folder, which may hold the student's files, off ``sys.path``.
"""

import argparse
import hashlib
import json
import logging
import os
import secrets
import stat
import sys
from pathlib import Path

import torch
import torch.nn as nn
from torch.export.graph_signature import InputKind, OutputKind

from . import artifact, checks, equivalence, messages, reference
from .analysis import BATCH, EVAL_BATCH, ModelAnalysis, Recorded, ops_with_failure, program_output_shape
from .handin import FINETUNE_INPUT_SIZE
from .trace import Op, trace_program
from .verdict import Finding

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 50_000_000

# Test cell -> its findings function. autograder.course lists the same cells but imports nbformat,
# which costs the judge seconds at start-up.
_FINDERS = {
    checks.LAYERS: checks.layer_findings,
    checks.POOL_SHAPES: checks.pool_findings,
    checks.CLASSIFIER: checks.classifier_findings,
    checks.FINETUNE: checks.finetune_findings,
}


class InvalidHandIn(ValueError):
    """A hand-in file that the judge does not accept."""


class RecordedVGG11(Recorded):
    """A VGG11 class known from its hand-in record: one analysis per ``num_classes`` that was recorded."""

    def __init__(self, models):
        self.models = models
        self._analyses = {}

    def analysis(self, check, num_classes=None):
        key = "default" if num_classes is None else str(num_classes)
        if key not in self._analyses:
            if key not in self.models:
                raise InvalidHandIn(f"no record for num_classes={num_classes}")
            self._analyses[key] = _shared_analysis(self.models[key], check)
        analysis = self._analyses[key]
        if analysis.problem is not None:
            analysis.problem.check = check
        return analysis


# The three VGG11 test cells hand in the same model, so one analysis (and one equivalence run) serves all.
_analyses_by_record = {}


def _shared_analysis(record, check):
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
    if digest not in _analyses_by_record:
        _analyses_by_record[digest] = _analysis_from_record(record, check)
    return _analyses_by_record[digest]


def _analysis_from_record(record, check):
    if not isinstance(record, dict):
        raise InvalidHandIn("model record is not an object")
    analysis = ModelAnalysis(device=str(record.get("device", "meta")))
    analysis.problem = _finding(check, record.get("problem"))
    analysis.crashed = bool(record.get("crashed"))
    analysis.rebuilt = {str(kind): [str(name) for name in names]
                        for kind, names in (record.get("rebuilt") or {}).items()}
    failed_ops = record.get("failed_ops") or {}
    if not isinstance(failed_ops, dict):
        raise InvalidHandIn("failed_ops is not an object")
    if analysis.crashed:
        analysis.failed_ops = {mode: _op(failed_ops[mode]) for mode in ("train", "eval") if mode in failed_ops}
    try:
        if record.get("train") is not None:
            analysis.train_program = _load_program(record["train"], BATCH)
        if record.get("eval") is not None:
            analysis.eval_program = _load_program(record["eval"], EVAL_BATCH)
    except artifact.UnsafeProgram as error:
        raise InvalidHandIn(str(error)) from error

    # The programs of a model that crashed compute the part before the error and return no logits.
    if analysis.train_program is not None:
        analysis.train_ops = ops_with_failure(analysis.train_program, analysis.failed_ops.get("train"))
        if not analysis.crashed:
            analysis.output_shape = program_output_shape(analysis.train_program)
    elif analysis.failed_ops.get("train") is not None:
        analysis.train_ops = [analysis.failed_ops["train"]]
    if analysis.eval_program is not None:
        analysis.eval_ops = ops_with_failure(analysis.eval_program, analysis.failed_ops.get("eval"))
    if analysis.problem is None and (analysis.train_program is None or analysis.eval_program is None
                                     or analysis.crashed):
        raise InvalidHandIn("a model without a problem must hand in its train-mode and eval-mode programs")
    return analysis


def _load_program(document, batch, size=reference.INPUT_SIZE):
    """Load a handed-in program and compute its shapes for an input of ``batch`` RGB images of ``size``."""
    program = artifact.load_program(document)
    artifact.propagate_shapes(program, (batch, 3, size, size))
    return program


def _finding(check, record):
    if record is None:
        return None
    if not isinstance(record, dict) or record.get("key") not in messages.CATALOGUE:
        raise InvalidHandIn("unknown problem key")
    hint = record.get("hint")
    if hint is not None and hint not in messages.CATALOGUE:
        raise InvalidHandIn("unknown hint key")
    return Finding(check, record["key"], _plain_fields(record.get("fields")), hint, _plain_fields(record.get("hint_fields")))


def _plain_fields(fields):
    if not isinstance(fields, dict):
        return {}
    return {str(name): value if isinstance(value, (int, float)) else str(value)[:300] for name, value in fields.items()}


def _op(item):
    """Rebuild an ``Op`` of an eager trace; shapes and pairs come back from JSON lists as tuples."""
    if not isinstance(item, dict):
        raise InvalidHandIn("op is not an object")

    def shape(value):
        return tuple(int(size) for size in value) if isinstance(value, list) else None

    params = {str(name): tuple(value) if isinstance(value, list) else value
              for name, value in (item.get("params") or {}).items()}
    weights = {str(role): None if name is None else str(name) for role, name in (item.get("weights") or {}).items()}
    return Op(kind=str(item.get("kind")), target=str(item.get("target")), node=str(item.get("node")),
              source=item.get("source") if isinstance(item.get("source"), str) else None,
              in_shape=shape(item.get("in_shape")), out_shape=shape(item.get("out_shape")),
              params=params, weights=weights)


def read_record(path):
    """Return the JSON object of one hand-in file; only a regular file of bounded size is read.

    Student code may put a symlink, a FIFO or a device there, so the file is checked before it is opened
    (a FIFO would block ``open``), opened without following links or blocking, and checked again.
    """
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            raise InvalidHandIn("not a regular file")
    except OSError as error:
        raise InvalidHandIn(f"cannot read: {error.strerror}") from error
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        raise InvalidHandIn(f"cannot open: {error.strerror}") from error
    with os.fdopen(descriptor, "rb") as handle:
        status = os.fstat(handle.fileno())
        if not stat.S_ISREG(status.st_mode) or status.st_size > MAX_RECORD_BYTES:
            raise InvalidHandIn("not a regular file of at most 50 MB")
        data = handle.read(MAX_RECORD_BYTES + 1)
    try:
        record = json.loads(data)
    except ValueError as error:
        raise InvalidHandIn(f"not JSON: {error}") from error
    if not isinstance(record, dict):
        raise InvalidHandIn("not a JSON object")
    if record.get("error"):
        raise InvalidHandIn(f"the hand-in failed in the kernel: {str(record['error'])[:300]}")
    return record


def answer_from_record(cell, record):
    """Return the object that the checks of ``cell`` judge: a ``RecordedVGG11`` or a ``RecordedFinetune``."""
    if cell == checks.FINETUNE:
        if record.get("kind") != "finetune" or not isinstance(record.get("facts"), dict):
            raise InvalidHandIn("not a fine-tuning record")
        facts, program = finetune_from_record(record)
        return checks.RecordedFinetune(facts, step=(lambda: program_step_findings(program)) if program else None)
    if record.get("kind") != "vgg11" or not isinstance(record.get("models"), dict):
        raise InvalidHandIn("not a VGG11 record")
    return RecordedVGG11(record["models"])


def finetune_from_record(record):
    """Return ``checks.finetune_facts`` for a fine-tuning record, read from its program where it has one,
    and the program or None.

    The parameters with their ``requires_grad`` and the last layer come from the program's graph, so a
    record can only claim what an exported program of a frozen VGG shows.
    """
    facts = record["facts"]
    base = {"module": bool(facts.get("module")), "repr": str(facts.get("repr", ""))[:80],
            "type": str(facts.get("type", ""))[:80], "vgg": bool(facts.get("vgg")), "typo": bool(facts.get("typo"))}
    if not base["vgg"]:
        return base, None
    if record.get("program") is None:
        raise InvalidHandIn("a VGG-like fine-tuning record must hand in its program")
    try:
        program = _load_program(record["program"], 2, FINETUNE_INPUT_SIZE)
    except artifact.UnsafeProgram as error:
        raise InvalidHandIn(str(error)) from error

    names = {spec.arg.name: spec.target for spec in program.graph_signature.input_specs if spec.kind.name == "PARAMETER"}
    parameters = [[fqn, bool(program.state_dict[fqn].requires_grad)] for fqn in names.values()
                  if fqn.startswith(("features.", "classifier."))]
    if not _torchvision_vgg11_parameters(program):
        return {**base, "vgg": False}, None
    linears = [op for op in trace_program(program) if op.kind == "linear"]
    last = linears[-1] if linears else None
    if last is not None and last.weights.get("weight") == "classifier.6.weight":
        head = ["Linear", last.params.get("in_features"), last.params.get("out_features")]
    else:
        head = [last.target if last is not None else "NoneType", None, None]
    return {**base, "head": head, "parameters": parameters}, program


def _torchvision_vgg11_parameters(program):
    """Return True when the program's parameters, ``classifier.6`` aside, have the names and shapes of
    torchvision's ``vgg11`` or ``vgg11_bn``, so that the fine-tuning check judges a VGG11."""
    import torchvision  # noqa: PLC0415 - only the fine-tuning cell needs it, and it takes a second to import

    def shapes(named):
        return {name: tuple(tensor.shape) for name, tensor in named if not name.startswith("classifier.6.")}

    handed_in = shapes((name, tensor) for name, tensor in program.state_dict.items()
                       if isinstance(tensor, nn.Parameter))
    for build in (torchvision.models.vgg11, torchvision.models.vgg11_bn):
        with torch.device("meta"):
            if shapes(build().named_parameters()) == handed_in:
                return True
    return False


def program_step_findings(program):
    """Run one training step of the handed-in program with seeded weights: the classifier must get gradients.

    This is the hand-in's version of the check that takes one SGD step on a live model. Parameters that
    do not require gradients get none, so frozen features cannot move. A classifier weight whose gradient
    is missing or zero would not move, for example because ``forward`` detaches its input.
    """
    generator = torch.Generator().manual_seed(0)
    state = {}
    for name, tensor in program.state_dict.items():
        if tensor.is_floating_point():
            value = torch.randn(tensor.shape, dtype=tensor.dtype, generator=generator) * 0.01
        else:
            value = torch.zeros(tensor.shape, dtype=tensor.dtype)
        state[name] = value.requires_grad_(bool(getattr(tensor, "requires_grad", False)) and tensor.is_floating_point())
    x = torch.randn(2, 3, FINETUNE_INPUT_SIZE, FINETUNE_INPUT_SIZE, generator=generator)
    try:
        output = _run_training_graph(program, state, x)
        nn.functional.cross_entropy(output, torch.tensor([1, 2])).backward()
    except Exception as error:  # noqa: BLE001 - a graph that cannot take a step fails the check
        return [Finding(checks.FINETUNE, "finetune.step_error", {"error_type": type(error).__name__,
                                                                  "error": str(error)[:200]})]
    still = [name for name, value in state.items() if name.startswith("classifier.") and name.endswith("weight")
             and (value.grad is None or not bool(value.grad.any()))]
    if still:
        return [Finding(checks.FINETUNE, "finetune.step_classifier_unchanged", {"names": ", ".join(still[:3])})]
    return []


def _run_training_graph(program, state, x):
    """Run the program's graph eagerly, so autograd records it, and return its user output."""
    args = []
    for spec in program.graph_signature.input_specs:
        if spec.kind == InputKind.USER_INPUT:
            args.append(x)
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER) and spec.target in state:
            args.append(state[spec.target])
        else:
            args.append(program.constants[spec.target])
    outputs = torch.fx.Interpreter(program.graph_module).run(*args)
    kinds = [spec.kind for spec in program.graph_signature.output_specs]
    return outputs[kinds.index(OutputKind.USER_OUTPUT)]


def judge_cell(folder, cell):
    """Return the verdict of one test cell as a JSON-ready dict."""
    path = Path(folder) / f"{cell}.json"
    if not path.exists() and not path.is_symlink():
        return {"status": "missing"}
    try:
        answer = answer_from_record(cell, read_record(path))
        findings = _FINDERS[cell](answer, hidden=True)
    except InvalidHandIn as error:
        return {"status": "invalid", "detail": str(error)[:300]}
    except Exception as error:  # noqa: BLE001 - a record that breaks a check is not a valid hand-in
        log.debug("judging %s failed", cell, exc_info=True)
        return {"status": "invalid", "detail": f"{type(error).__name__}: {str(error)[:300]}"}
    return {"status": "judged", "findings": [
        {"key": f.key, "fields": _plain_fields(f.fields), "hint": f.hint, "hint_fields": _plain_fields(f.hint_fields)}
        for f in findings
    ]}


def judge_folder(folder, cells=tuple(_FINDERS)):
    """Judge the hand-ins of ``cells`` in ``folder``, with reference weights and an input drawn for this call."""
    _analyses_by_record.clear()
    equivalence.set_seeds(secrets.randbelow(2**31), secrets.randbelow(2**31))
    return {cell: judge_cell(folder, cell) for cell in cells}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -P -m autograder.judge", description=__doc__.splitlines()[0])
    parser.add_argument("folder", help="the hand-in folder (AUTOGRADER_HANDIN_DIR of the graded kernel)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    json.dump(judge_folder(arguments.folder), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
