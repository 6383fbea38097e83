"""The kernel's side of grading: hand the student's model to the grader as data, never as code.

A hidden line at the start of each test cell calls ``hand_in(<test cell>, <answer>)``. While nbgrader
grades, the environment variable ``AUTOGRADER_HANDIN_DIR`` names a fresh folder, and ``hand_in``
writes ``<test cell>.json`` there. For VGG11 the file contains the model's exported programs (see
``artifact``) and the problem found while building or running it. For the fine-tuned model it contains
the train-mode program, which carries each parameter's ``requires_grad``. A separate process that never imports student code judges these files (see
``judge``), so patching ``autograder`` or torch in the kernel cannot turn a failing check into a pass.
A forged file can only hand in a program, and the program must compute VGG11 to pass.

Outside grading (no ``AUTOGRADER_HANDIN_DIR``), ``hand_in`` does nothing.
"""

import copy
import json
import logging
import os
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn as nn

from . import artifact, checks
from .analysis import analyse

log = logging.getLogger(__name__)

HANDIN_DIR_VARIABLE = "AUTOGRADER_HANDIN_DIR"
FORMAT = 1
FINETUNE_INPUT_SIZE = 64


def hand_in(cell, answer):
    """Write what the grader judges for test cell ``cell`` from ``answer`` (the VGG11 class or the
    fine-tuned model). A failure to record the model is written into the record instead of raised, and a
    failure to write is logged, so that the test cell's own check still runs."""
    folder = os.environ.get(HANDIN_DIR_VARIABLE)
    if not folder:
        return
    try:
        record = finetune_record(answer) if cell == checks.FINETUNE else vgg11_record(answer, cell)
    except Exception as error:  # noqa: BLE001 - the record states what went wrong
        log.debug("hand-in of %s failed", cell, exc_info=True)
        record = {"error": f"{type(error).__name__}: {str(error)[:300]}"}
    try:
        _write_json(Path(folder) / f"{cell}.json", {"format": FORMAT, "cell": cell, **record})
    except OSError as error:
        log.warning("could not write the hand-in of %s: %s", cell, error)


def vgg11_record(model_cls, cell):
    """Return the record of a VGG11 class: its analysis, and for the classifier cell the one with num_classes=7."""
    record = {"kind": "vgg11", "models": {"default": analysis_record(analyse(model_cls, cell))}}
    if cell == checks.CLASSIFIER:
        other = analyse(model_cls, cell, num_classes=checks.OTHER_NUM_CLASSES)
        record["models"][str(checks.OTHER_NUM_CLASSES)] = analysis_record(other)
    return record


def analysis_record(analysis):
    """Return a ``ModelAnalysis`` as JSON-ready data: programs, problem, failed ops and rebuilt parameters."""
    problem = analysis.problem
    return {
        "device": analysis.device,
        "problem": None if problem is None else {
            "key": problem.key, "fields": problem.fields, "hint": problem.hint, "hint_fields": problem.hint_fields,
        },
        "crashed": analysis.crashed,
        "rebuilt": analysis.rebuilt,
        # A forward pass that raised travels as programs of the part before the error, plus the op
        # that raised. The judge never reads ops without a program, because those could be made up.
        "failed_ops": {mode: asdict(op) for mode, op in analysis.failed_ops.items() if op is not None},
        "train": artifact.dump_program(analysis.train_program) if analysis.train_program is not None else None,
        "eval": artifact.dump_program(analysis.eval_program) if analysis.eval_program is not None else None,
    }


def finetune_record(model):
    """Return the fine-tuned model's facts and, for a VGG-like model, its train-mode program.

    The judge reads the parameters' ``requires_grad`` and the last layer from the program, not from
    the facts, and runs one training step of the program with weights of its own. The program is exported from a copy on the ``meta`` device, which takes no memory for
    the weights, with a 64x64 input, which torchvision's adaptive pool accepts.
    """
    facts = checks.finetune_facts(model)
    record = {"kind": "finetune", "facts": facts}
    if facts.get("vgg"):
        example = torch.empty(2, 3, FINETUNE_INPUT_SIZE, FINETUNE_INPUT_SIZE, device="meta")
        program = torch.export.export(meta_copy(model).train(), (example,), strict=False)
        record["program"] = artifact.dump_program(program)
    return record


def meta_copy(model):
    """Return a deep copy of ``model`` whose parameters and buffers are on ``meta``, keeping ``requires_grad``."""
    memo = {}
    for parameter in model.parameters():
        memo[id(parameter)] = nn.Parameter(torch.empty_like(parameter, device="meta"),
                                           requires_grad=parameter.requires_grad)
    for buffer in model.buffers():
        memo[id(buffer)] = torch.empty_like(buffer, device="meta")
    return copy.deepcopy(model, memo)


def _write_json(path, record):
    """Write ``record`` so that a reader sees the old file or the whole new one, never half of it."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(record, default=_plain), encoding="utf-8")
    os.replace(temporary, path)


def _plain(value):
    """Return ``value`` as text: the JSON fallback for values that json cannot write, such as a torch.dtype."""
    return str(value)
