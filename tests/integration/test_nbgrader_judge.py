"""The preprocessors that put the judge's verdicts into the test cells, run on small notebooks."""

import json
import os

import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograder.handin import HANDIN_DIR_VARIABLE
from autograder.nbgrader_judge import JudgeHandIns, PrepareHandIns

pytestmark = pytest.mark.integration


def _cell(grade_id, outputs=()):
    cell = new_code_cell("check()")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": grade_id, "locked": True, "points": 1}
    cell.outputs = list(outputs)
    return cell


def _judged(notebook):
    notebook, resources = PrepareHandIns().preprocess(notebook, {})
    folder = os.environ[HANDIN_DIR_VARIABLE]
    notebook, _ = JudgeHandIns(test_cells=["test_vgg11_layers", "test_finetune_frozen"]).preprocess(notebook, resources)
    return notebook, folder


def _errors(cell):
    return [output for output in cell.outputs if output.output_type == "error"]


def test_judge_replaces_kernel_outputs():
    fake_pass = new_output("stream", name="stdout", text="passed\n")
    kernel_error = new_output("error", ename="NameError", evalue="name 'VGG11' is not defined", traceback=[])
    notebook = new_notebook(cells=[_cell("test_vgg11_layers", [fake_pass, kernel_error]), _cell("test_finetune_frozen")])

    notebook, folder = _judged(notebook)

    layers, finetune = notebook.cells
    assert [error.ename for error in _errors(layers)] == ["CheckFailed"]
    assert "[handin.missing]" in _errors(layers)[0].evalue
    assert "NameError" in _errors(layers)[0].evalue
    assert [error.ename for error in _errors(finetune)] == ["CheckFailed"]
    assert not os.path.exists(folder)
    assert HANDIN_DIR_VARIABLE not in os.environ


def test_judge_names_limit_of_earlier_cell():
    answer = new_code_cell("model = build()")
    answer.metadata["nbgrader"] = {"grade_id": "finetune_model", "solution": True}
    notebook = new_notebook(cells=[answer, _cell("test_finetune_frozen")])
    notebook.metadata["autograder"] = {"limits": [
        {"cell": "finetune_model", "kind": "kernel_died", "detail": "signal 9 (SIGKILL)"},
    ]}

    notebook, _ = _judged(notebook)

    assert "kernel_died (finetune_model): signal 9 (SIGKILL)" in _errors(notebook.cells[1])[0].evalue


def test_judge_failure_raises(monkeypatch):
    notebook = new_notebook(cells=[_cell("test_vgg11_layers")])
    notebook, resources = PrepareHandIns().preprocess(notebook, {})
    judge = JudgeHandIns(timeout=60)
    monkeypatch.setattr(judge, "run_judge", lambda folder: json.loads("not json"))

    with pytest.raises(ValueError):
        judge.preprocess(notebook, resources)


@pytest.mark.parametrize("output", [
    new_output("execute_result", data={"text/plain": "'ok'"}, execution_count=1),
    new_output("stream", name="stderr", text="warning\n"),
], ids=["execute_result", "stderr"])
def test_judge_drops_outputs_that_score(output):
    notebook = new_notebook(cells=[_cell("test_vgg11_layers", [output])])

    notebook, _ = _judged(notebook)

    assert [o.output_type for o in notebook.cells[0].outputs] == ["error"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can mount the size-limited tmpfs")
def test_handin_folder_size_limited():
    _, resources = PrepareHandIns(size_mib=1).preprocess(new_notebook(), {})
    folder = resources["autograder_handin_dir"]
    try:
        with pytest.raises(OSError):
            with open(os.path.join(folder, "fill"), "wb") as handle:
                handle.write(bytes(2 * 1024 * 1024))
    finally:
        JudgeHandIns().preprocess(new_notebook(), resources)
    assert not os.path.exists(folder)
