"""Submissions that try to raise their own grade, for tests/integration/test_attacks.py.

Each attack starts from an honest but imperfect answer: the ``fc1_512`` VGG11 (its classifier cell
fails) and the ``not_frozen`` fine-tuning (its cell fails). An attack adds code to the answer cells or
edits the notebook, and ``EXPECTED_POINTS`` says what it must get: never more than the honest answer.
"""

import copy
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parent.parent
ANSWERS = REPO_ROOT / "examples" / "answers"

# Points of the honest base answer: layers 3, pool shapes 3, classifier 0, fine-tuning 0.
BASE_POINTS = {"test_vgg11_layers": 3.0, "test_vgg11_pool_shapes": 3.0, "test_vgg11_classifier": 0.0,
               "test_finetune_frozen": 0.0}
NOTHING = dict.fromkeys(BASE_POINTS, 0.0)

# A file that a forged program would create if the judge ran code from it.
PWNED_MARKER = "/tmp/vgg11-attack-pwned"

PATCH_CHECKS = """
import autograder.checks as _checks
for _name in dir(_checks):
    if _name.startswith("check_"):
        setattr(_checks, _name, lambda *args, **kwargs: None)
    if _name.endswith("_findings"):
        setattr(_checks, _name, lambda *args, **kwargs: [])
"""

FAKE_MODULES = """
import importlib.abc, importlib.machinery, sys, types
import autograder


class _FakeAutograder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path, target=None):
        if name.startswith("autograder."):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__getattr__ = lambda attribute: (lambda *args, **kwargs: None)
        return module

    def exec_module(self, module):
        pass


for _name in [name for name in sys.modules if name.startswith("autograder.")]:
    del sys.modules[_name]
    if hasattr(autograder, _name.split(".")[1]):
        delattr(autograder, _name.split(".")[1])
sys.meta_path.insert(0, _FakeAutograder())
"""

HIDE_TRACEBACKS = """
import sys
import IPython

_shell = IPython.get_ipython()
_shell._showtraceback = lambda *args, **kwargs: None
_shell.showtraceback = lambda *args, **kwargs: None
sys.excepthook = lambda *args: None
"""

# Replaces hand_in with one that writes records claiming a pass: a VGG11 without a problem and without
# a program, a program that names torch.save and one whose shape is a Python expression, and
# fine-tuning facts without a program.
FORGE_HANDIN = f"""
import json, os
import autograder.handin as _handin

_EVIL = "__import__('os').system('touch {PWNED_MARKER}')"


def _forged(cell, answer):
    folder = os.environ.get("AUTOGRADER_HANDIN_DIR")
    if not folder:
        return
    graph = {{"graph_module": {{"graph": {{"nodes": [{{"target": "torch.save", "inputs": [], "outputs": []}}],
                                         "tensor_values": {{}}}},
                              "signature": {{"input_specs": [], "output_specs": []}}}},
             "range_constraints": {{}}}}
    records = {{
        "test_vgg11_layers": {{"kind": "vgg11", "models": {{"default": {{"problem": None, "train": None}}}}}},
        "test_vgg11_pool_shapes": {{"kind": "vgg11", "models": {{"default": {{"problem": None,
                                   "train": {{"graph": graph}}}}}}}},
        "test_vgg11_classifier": {{"kind": "vgg11", "models": {{"default": {{"problem": None,
                                  "train": {{"graph": {{**graph, "range_constraints": {{_EVIL: {{}}}}}}}}}}}}}},
        "test_finetune_frozen": {{"kind": "finetune", "facts": {{"module": True, "vgg": True,
                                 "head": ["Linear", 4096, 10], "parameters": []}}}},
    }}
    with open(os.path.join(folder, cell + ".json"), "w") as handle:
        json.dump({{"format": 1, "cell": cell, **records[cell]}}, handle)


_handin.hand_in = _forged
"""


# Replaces VGG11 with a single conv, and hand_in with one that claims the base answer's layers as the
# ops of a forward pass that raised at fc1: an eager op list, with no program that computes them.
FORGE_CRASH_OPS = """
import json, os
from dataclasses import asdict
import autograder.handin as _handin
from autograder.analysis import analyse
from autograder.trace import trace_program

_honest_ops = [asdict(op) for op in trace_program(analyse(VGG11, "test_vgg11_layers").train_program)]
_hand_in = _handin.hand_in


class VGG11(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv = nn.Conv2d(3, num_classes, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3))


def _forged(cell, answer):
    folder = os.environ.get("AUTOGRADER_HANDIN_DIR")
    if not folder or cell == "test_finetune_frozen":
        return _hand_in(cell, answer)
    fc1 = {"kind": "linear", "target": "linear", "node": "fc1", "source": None, "in_shape": [2, 512],
           "out_shape": None, "params": {"in_features": 25088, "out_features": 4096}, "weights": {}}
    crashed = {"problem": {"key": "run.error", "fields": {"error_type": "RuntimeError", "error": "", "shape": "x"}},
               "crashed": True, "rebuilt": {}, "ops": _honest_ops + [fc1], "failed_ops": {"train": fc1},
               "train": None, "eval": None}
    with open(os.path.join(folder, cell + ".json"), "w") as handle:
        json.dump({"format": 1, "cell": cell, "kind": "vgg11", "models": {"default": crashed}}, handle)


_handin.hand_in = _forged
"""


# Gives each test cell an execute_result after it ran: nbgrader reads the first execute_result of a
# grade cell as partial credit, and a value that is not a number as full points.
DISPLAYHOOK_CREDIT = """
import IPython


def _claim_points(result):
    IPython.get_ipython().displayhook("ok")


IPython.get_ipython().events.register("post_run_cell", _claim_points)
"""

PATCH_CHECKS_RETURN = """
import autograder.checks as _checks
for _name in dir(_checks):
    if _name.startswith("check_"):
        setattr(_checks, _name, lambda *args, **kwargs: 3.0)
"""


def _edit_test_cell(notebook):
    cell = _cell(notebook, "test_vgg11_classifier")
    cell.source = "pass"


def _duplicate_test_cell(notebook):
    """Put an emptied copy of a test cell before it: nbgrader keeps the first cell with a grade_id."""
    cell = _cell(notebook, "test_vgg11_classifier")
    duplicate = copy.deepcopy(cell)
    duplicate.id = "duplicated-test"
    duplicate.source = "pass"
    notebook.cells.insert(notebook.cells.index(cell), duplicate)


def _edit_metadata(notebook):
    """Turn off one test cell's grade flag, raise another's points, and paste a grade cell of another notebook."""
    _cell(notebook, "test_vgg11_classifier").metadata["nbgrader"]["grade"] = False
    _cell(notebook, "test_finetune_frozen").metadata["nbgrader"]["points"] = 100
    pasted = copy.deepcopy(_cell(notebook, "test_vgg11_layers"))
    pasted.id = "pasted-grade-cell"
    pasted.source = "print('bonus')"
    pasted.metadata["nbgrader"]["grade_id"] = "test_bonus"
    notebook.cells.append(pasted)


def _cell(notebook, grade_id):
    return next(cell for cell in notebook.cells if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id)


# Attack name -> (code added to the vgg11_model answer, code added to the finetune_model answer,
# notebook edit or None, expected points).
ATTACKS = {
    "patch_checks": (PATCH_CHECKS, "", None, BASE_POINTS),
    "fake_modules": (FAKE_MODULES, "", None, NOTHING),
    "hide_tracebacks": (HIDE_TRACEBACKS, "", None, BASE_POINTS),
    "forge_handin": (FORGE_HANDIN, "", None, NOTHING),
    "forge_crash_ops": (FORGE_CRASH_OPS, "", None, NOTHING),
    "displayhook_credit": (DISPLAYHOOK_CREDIT, "", None, BASE_POINTS),
    "patch_checks_return": (PATCH_CHECKS_RETURN, "", None, BASE_POINTS),
    "edit_test_cell": ("", "", _edit_test_cell, BASE_POINTS),
    "duplicate_test_cell": ("", "", _duplicate_test_cell, BASE_POINTS),
    "edit_metadata": ("", "", _edit_metadata, BASE_POINTS),
}


def write_attack(release_notebook, inbox, name):
    """Write the submission of attack ``name`` to ``<inbox>/<name>/Assignment1/Assignment1_blank.ipynb``."""
    from autograder.examples import make_submission, submission_path

    vgg11_extra, finetune_extra, edit, _ = ATTACKS[name]
    answers = {
        "vgg11_model": (ANSWERS / "fc1_512_vgg11.py").read_text(encoding="utf-8") + vgg11_extra,
        "finetune_model": (ANSWERS / "not_frozen_finetune.py").read_text(encoding="utf-8") + finetune_extra,
    }
    path = make_submission(release_notebook, answers, submission_path(inbox, name))
    if edit is not None:
        notebook = nbformat.read(str(path), as_version=4)
        edit(notebook)
        nbformat.write(notebook, str(path))
    return path
