"""The op trace: the same from a saved program as from the live one, and the same for module and functional styles."""

import pytest
import torch

from autograder.analysis import example_input
from autograder.trace import export_model, trace_program
from tests.casefiles import VGG11_CASES, load_case

STYLES = {path.stem: path for path in VGG11_CASES}


def _kinds(ops):
    return [(op.kind, tuple(sorted(op.params.items())), op.out_shape) for op in ops if op.structural]


@pytest.fixture(scope="module")
def functional_program():
    with torch.device("meta"):
        model = load_case(STYLES["pass_functional_style"]).VGG11()
    return export_model(model.train(), example_input(2, device="meta"))


def test_trace_same_after_save_and_load(functional_program, tmp_path):
    path = tmp_path / "model.pt2"
    torch.export.save(functional_program, path)
    assert _kinds(trace_program(torch.export.load(path))) == _kinds(trace_program(functional_program))


def test_trace_same_for_functional_and_modules(functional_program):
    with torch.device("meta"):
        model = load_case(STYLES["pass_sequential_blocks"]).VGG11()
    modules = trace_program(export_model(model.train(), example_input(2, device="meta")))
    assert _kinds(modules) == _kinds(trace_program(functional_program))
