"""Submission discovery in ``autograder.course`` and the results table in ``autograder.report``."""

import csv

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograder import course, report, tables
from autograder.course import ASSIGNMENT_ID, NOTEBOOK_NAME, TEST_CELLS


def _write_notebook(path, cells=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=cells or [new_code_cell("x = 1")]), str(path))


@pytest.fixture
def inbox(tmp_path):
    root = tmp_path / "assignments"
    _write_notebook(root / "good" / ASSIGNMENT_ID / NOTEBOOK_NAME)
    _write_notebook(root / "wrong_name" / ASSIGNMENT_ID / "Assignment1_blank (1).ipynb")
    (root / "empty" / ASSIGNMENT_ID).mkdir(parents=True)
    _write_notebook(root / "flat" / NOTEBOOK_NAME)
    (root / "not_json" / ASSIGNMENT_ID).mkdir(parents=True)
    (root / "not_json" / ASSIGNMENT_ID / NOTEBOOK_NAME).write_text("{", encoding="utf-8")
    (root / "list_json" / ASSIGNMENT_ID).mkdir(parents=True)
    (root / "list_json" / ASSIGNMENT_ID / NOTEBOOK_NAME).write_text("[]", encoding="utf-8")
    (root / ".gitkeep").write_text("", encoding="utf-8")
    (root / ".ipynb_checkpoints").mkdir()
    return root


def test_list_submissions_problems(inbox):
    problems = {submission.student_id: submission.problem for submission in course.list_submissions(inbox)}
    assert problems == {
        "empty": "notebook_missing",
        "flat": "missing_assignment_folder",
        "good": None,
        "list_json": "invalid_notebook",
        "not_json": "invalid_notebook",
        "wrong_name": "wrong_notebook_name",
    }


def test_list_submissions_details(inbox):
    details = {submission.student_id: submission.detail for submission in course.list_submissions(inbox)}
    assert details["wrong_name"] == "Assignment1_blank (1).ipynb"
    assert details["flat"] == NOTEBOOK_NAME
    assert details["not_json"].startswith("NotJSONError")


def test_list_submissions_missing_inbox(tmp_path):
    assert course.list_submissions(tmp_path / "no_such_folder") == []


def test_every_problem_has_status_text(inbox):
    for submission in course.list_submissions(inbox):
        if submission.problem:
            assert submission.problem in report.STATUSES


def test_find_course_root_from_subfolder(repo_root):
    assert course.find_course_root(repo_root / "autograder") == repo_root


def test_find_course_root_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="nbgrader_config.py"):
        course.find_course_root(tmp_path)


def test_notebook_differences_ignores_outputs(tmp_path):
    cell = new_code_cell("x = 1")
    _write_notebook(tmp_path / "a.ipynb", [cell])
    executed = new_code_cell("x = 1", execution_count=3, outputs=[new_output("stream", name="stdout", text="1")])
    executed.id = cell.id
    _write_notebook(tmp_path / "b.ipynb", [executed])
    assert course.notebook_differences(tmp_path / "a.ipynb", tmp_path / "b.ipynb") == []


def test_notebook_differences_finds_source_change(tmp_path):
    cell = new_code_cell("x = 1")
    _write_notebook(tmp_path / "a.ipynb", [cell])
    changed = new_code_cell("x = 2")
    changed.id = cell.id
    _write_notebook(tmp_path / "b.ipynb", [changed])
    assert course.notebook_differences(tmp_path / "a.ipynb", tmp_path / "b.ipynb") == ["cell 0 (#0): source differs"]


def _results():
    full = {name: report.CellScore(points, points) for name, points in zip(TEST_CELLS, (3.0, 3.0, 2.0, 2.0))}
    partial = dict(full, test_vgg11_classifier=report.CellScore(0.0, 2.0), test_finetune_frozen=report.CellScore(None, 2.0))
    return [
        report.StudentResult("solution", "graded", scores=full),
        report.StudentResult("학생01", "graded", scores=partial, notes=["ungraded_cells"]),
        report.StudentResult("missing", "notebook_missing", detail="-"),
    ]


def test_format_table_rows():
    lines = report.format_table(_results(), list(TEST_CELLS)).splitlines()
    assert lines[0].split() == ["student", "vgg11_layers", "vgg11_pool_shapes", "vgg11_classifier", "finetune_frozen", "total", "status"]
    assert lines[2].split()[:6] == ["solution", "3/3", "3/3", "2/2", "2/2", "10/10"]
    assert lines[3].split()[:6] == ["학생01", "3/3", "3/3", "0/2", "-/2", "6/10"]
    assert lines[4].split()[:6] == ["missing", "-", "-", "-", "-", "-"]
    assert "제출 파일 없음 / notebook missing" in lines[4]


def test_format_table_aligns_korean_ids():
    lines = report.format_table(_results(), list(TEST_CELLS)).splitlines()
    # "학생01" has 4 characters but takes 6 terminal columns, so its padding differs from "solution".
    columns = [tables.display_width(line.split("3/3")[0]) for line in lines[2:4]]
    assert columns[0] == columns[1]


def test_format_notes_lists_details():
    notes = report.format_notes(_results()).splitlines()
    assert notes == [
        "* 학생01: 점수 없는 테스트 셀 / test cells without a score",
        "* missing: -",
    ]


def test_write_csv_columns(tmp_path):
    path = tmp_path / "results.csv"
    report.write_csv(_results(), list(TEST_CELLS), path)
    with open(path, encoding="utf-8") as handle:
        rows = {row["student_id"]: row for row in csv.DictReader(handle)}
    assert rows["solution"]["total"] == "10"
    assert rows["solution"]["max_total"] == "10"
    assert rows["학생01"]["test_vgg11_classifier"] == "0"
    assert rows["학생01"]["test_finetune_frozen"] == ""
    assert rows["missing"]["status"] == "notebook_missing"


def test_compare_with_expected_reports_mismatch():
    expected = {
        "solution": dict.fromkeys(TEST_CELLS, "pass"),
        "학생01": {"test_vgg11_classifier": "pass", "test_finetune_frozen": "fail"},
    }
    assert report.compare_with_expected(_results(), expected) == [
        "학생01 test_vgg11_classifier: expected pass, got fail",
        "학생01 test_finetune_frozen: expected fail, got no score",
    ]
