"""The bundled example submissions and ``make_submission``, which builds them from the release notebook."""

import nbformat
import pytest

from autograder.course import ANSWER_CELLS, ASSIGNMENT_ID, NOTEBOOK_NAME, TEST_CELLS
from autograder.examples import EXAMPLES, EXPECTED, make_submission, write_examples


@pytest.fixture(scope="module")
def release_notebook(repo_root):
    path = repo_root / "release" / ASSIGNMENT_ID / NOTEBOOK_NAME
    assert path.is_file(), f"{path} is missing; run `nbgrader generate_assignment {ASSIGNMENT_ID} --force`"
    return path


def _cells_by_grade_id(notebook):
    return {cell.metadata["nbgrader"]["grade_id"]: cell for cell in notebook.cells if "nbgrader" in cell.metadata}


def test_examples_are_current(repo_root, release_notebook, tmp_path):
    committed = repo_root / "examples" / "submissions"
    write_examples(release_notebook, repo_root / "examples" / "answers", tmp_path)

    for student_id in EXAMPLES:
        regenerated = tmp_path / student_id / ASSIGNMENT_ID / NOTEBOOK_NAME
        stored = committed / student_id / ASSIGNMENT_ID / NOTEBOOK_NAME
        assert stored.is_file(), f"{stored} is missing; run `python -m autograder.examples`"
        assert stored.read_bytes() == regenerated.read_bytes(), f"{stored} is stale; run `python -m autograder.examples`"


def test_examples_have_no_extra_students(repo_root):
    committed = {path.name for path in (repo_root / "examples" / "submissions").iterdir() if path.is_dir()}
    assert committed == set(EXAMPLES)


def test_examples_cover_expected_table():
    assert set(EXAMPLES) == set(EXPECTED)
    for student_id, cells in EXPECTED.items():
        assert set(cells) == set(TEST_CELLS), student_id
        assert set(cells.values()) <= {"pass", "fail"}, student_id


def test_blank_example_is_release_copy(repo_root, release_notebook):
    blank = nbformat.read(str(repo_root / "examples" / "submissions" / "blank" / ASSIGNMENT_ID / NOTEBOOK_NAME), 4)
    release = nbformat.read(str(release_notebook), 4)
    assert blank == release


def test_make_submission_replaces_answer_cells(release_notebook, tmp_path):
    answers = {"vgg11_model": "class VGG11:\n    pass\n", "finetune_model": "model_finetune = None"}
    out = make_submission(release_notebook, answers, tmp_path / "student" / NOTEBOOK_NAME)

    submitted = _cells_by_grade_id(nbformat.read(str(out), 4))
    assert submitted["vgg11_model"].source == "class VGG11:\n    pass"
    assert submitted["finetune_model"].source == "model_finetune = None"


def test_make_submission_keeps_other_cells(release_notebook, tmp_path):
    out = make_submission(release_notebook, {"vgg11_model": "VGG11 = None"}, tmp_path / NOTEBOOK_NAME)

    release = nbformat.read(str(release_notebook), 4)
    submitted = nbformat.read(str(out), 4)
    assert len(submitted.cells) == len(release.cells)
    assert submitted.metadata == release.metadata
    for before, after in zip(release.cells, submitted.cells):
        assert after.id == before.id
        assert after.metadata == before.metadata
        if after.metadata.get("nbgrader", {}).get("grade_id") != "vgg11_model":
            assert after.source == before.source


def test_make_submission_answer_cells_exist(release_notebook):
    cells = _cells_by_grade_id(nbformat.read(str(release_notebook), 4))
    for grade_id in ANSWER_CELLS:
        assert cells[grade_id].metadata["nbgrader"]["solution"], grade_id


@pytest.mark.parametrize("grade_id", ["no_such_cell", "test_vgg11_layers"])
def test_make_submission_rejects_non_answer_cell(release_notebook, tmp_path, grade_id):
    with pytest.raises(ValueError, match=grade_id):
        make_submission(release_notebook, {grade_id: "pass"}, tmp_path / NOTEBOOK_NAME)
    assert not (tmp_path / NOTEBOOK_NAME).exists()
