"""Grade the bundled examples and a few broken submissions in a temporary course with real nbgrader runs.

One module-scoped fixture builds the course and runs ``python -m autograder.grade`` once (with the
``grade_submissions`` fixture of tests/conftest.py), because
each notebook takes tens of seconds to autograde. The tests then read the gradebook, the logs,
the feedback HTML and the CSV files that this run left behind.
"""

import csv
import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader.api import Gradebook

from autograder.course import ASSIGNMENT_ID, NOTEBOOK_NAME, TEST_CELLS
from autograder.examples import EXPECTED

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Every hidden-test block of the notebook contains this comment.
CANARY = "HIDDEN-TEST-CANARY-7f3a9c"
CHECKSUM_WARNING = "Attribute 'checksum' for cell"

# Student folders besides the examples, with the status that the grading app must report.
BROKEN_SUBMISSIONS = {
    "not_json": "invalid_notebook",
    "wrong_name": "wrong_notebook_name",
    "empty_folder": "notebook_missing",
    "no_assignment_folder": "missing_assignment_folder",
    "symlinked": "special_files",
}
# A notebook of another assignment under this assignment's file name, and the solution with extra files.
OTHER_ASSIGNMENT = "other_assignment"
EXTRA_FILES = "extra_files"
# A copy of the solution with test_vgg11_classifier edited and test_finetune_frozen deleted.
EDITED_TESTS = "edited_tests"
EDITED_CELL = "test_vgg11_classifier"
DELETED_CELL = "test_finetune_frozen"


def _write_broken_submissions(inbox, solution):
    (inbox / "not_json" / ASSIGNMENT_ID).mkdir(parents=True)
    (inbox / "not_json" / ASSIGNMENT_ID / NOTEBOOK_NAME).write_text("this is not JSON\n", encoding="utf-8")

    (inbox / "wrong_name" / ASSIGNMENT_ID).mkdir(parents=True)
    shutil.copy(solution, inbox / "wrong_name" / ASSIGNMENT_ID / "assignment1.ipynb")

    (inbox / "empty_folder" / ASSIGNMENT_ID).mkdir(parents=True)

    (inbox / "no_assignment_folder").mkdir()
    shutil.copy(solution, inbox / "no_assignment_folder" / NOTEBOOK_NAME)

    # A link to the source notebook, which contains the hidden tests, next to an honest notebook.
    (inbox / "symlinked" / ASSIGNMENT_ID).mkdir(parents=True)
    shutil.copy(solution, inbox / "symlinked" / ASSIGNMENT_ID / NOTEBOOK_NAME)
    source = inbox.parent / "source" / ASSIGNMENT_ID / NOTEBOOK_NAME
    (inbox / "symlinked" / ASSIGNMENT_ID / "notes.ipynb").symlink_to(source)


def _write_unusual_submissions(inbox, solution):
    other = new_notebook(cells=[new_markdown_cell("# Assignment 2: ResNet"), new_code_cell("model = None")])
    (inbox / OTHER_ASSIGNMENT / ASSIGNMENT_ID).mkdir(parents=True)
    nbformat.write(other, str(inbox / OTHER_ASSIGNMENT / ASSIGNMENT_ID / NOTEBOOK_NAME))

    folder = inbox / EXTRA_FILES / ASSIGNMENT_ID
    shutil.copytree(solution.parent, folder)
    (folder / "notes.txt").write_text("extra file\n", encoding="utf-8")
    (folder / "weights.bin").write_bytes(bytes(1_000_000))
    (folder / "Untitled.ipynb").write_text(nbformat.writes(new_notebook()), encoding="utf-8")


def _write_edited_tests(inbox, solution):
    notebook = nbformat.read(str(solution), as_version=4)
    kept = []
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id == EDITED_CELL:
            cell.source = "pass  # the student replaced the test"
        if grade_id != DELETED_CELL:
            kept.append(cell)
    notebook.cells = kept
    path = inbox / EDITED_TESTS / ASSIGNMENT_ID / NOTEBOOK_NAME
    path.parent.mkdir(parents=True)
    nbformat.write(notebook, str(path))


@pytest.fixture(scope="module")
def graded_course(grade_submissions, repo_root):
    examples = repo_root / "examples" / "submissions"
    assert examples.is_dir(), "examples/submissions/ is missing; run `python -m autograder.examples`"

    def write_submissions(inbox, release_notebook):
        shutil.copytree(examples, inbox, dirs_exist_ok=True)
        solution = examples / "solution" / ASSIGNMENT_ID / NOTEBOOK_NAME
        _write_broken_submissions(inbox, solution)
        _write_unusual_submissions(inbox, solution)
        _write_edited_tests(inbox, solution)

    return grade_submissions(write_submissions)


def test_grading_app_succeeds(graded_course):
    print(f"grading took {graded_course.seconds:.0f} s")
    for line in graded_course.run.stderr.splitlines():
        if "Autograded " in line:
            print(line.rsplit("]", 1)[-1].strip())
    assert graded_course.run.returncode == 0, graded_course.run.stdout + graded_course.run.stderr


@pytest.mark.parametrize(
    "student_id, grade_id, outcome",
    [(student, cell, outcome) for student, cells in EXPECTED.items() for cell, outcome in cells.items()],
)
def test_example_outcome(graded_course, student_id, grade_id, outcome):
    score, max_score = graded_course.score(student_id, grade_id)
    assert max_score > 0
    if outcome == "pass":
        assert score == max_score, f"{student_id} should pass {grade_id}"
    else:
        assert score == 0, f"{student_id} should fail {grade_id}"


def test_solution_full_points(graded_course):
    with Gradebook(graded_course.db_url) as gradebook:
        submission = gradebook.find_submission(ASSIGNMENT_ID, "solution")
        assert submission.max_score > 0
        assert submission.score == submission.max_score


def test_blank_zero_points(graded_course):
    with Gradebook(graded_course.db_url) as gradebook:
        assert gradebook.find_submission(ASSIGNMENT_ID, "blank").score == 0


def test_expected_table_covers_test_cells():
    for student_id, cells in EXPECTED.items():
        assert set(cells) == set(TEST_CELLS), student_id


@pytest.mark.parametrize("student_id", sorted(EXPECTED))
def test_untouched_tests_no_checksum_warning(graded_course, student_id):
    assert CHECKSUM_WARNING not in graded_course.log(student_id), (
        f"nbgrader reported a changed locked cell in the example {student_id}. When release/ is older than "
        "source/, regenerate it and then the examples (`python -m autograder.examples`)."
    )


@pytest.mark.parametrize("student_id", sorted(EXPECTED))
def test_hidden_tests_ran(graded_course, student_id):
    autograded = graded_course.autograded(student_id).read_text(encoding="utf-8")
    assert autograded.count(CANARY) >= len(TEST_CELLS)


@pytest.mark.parametrize("student_id", sorted(EXPECTED) + [EDITED_TESTS])
def test_feedback_hides_hidden_tests(graded_course, student_id):
    feedback = graded_course.feedback(student_id)
    assert feedback.is_file()
    html = feedback.read_text(encoding="utf-8")
    assert CANARY not in html
    assert "BEGIN HIDDEN TESTS" not in html


def test_edited_test_cell_warns(graded_course):
    log = graded_course.log(EDITED_TESTS)
    assert f"{CHECKSUM_WARNING} {EDITED_CELL} has changed" in log


def test_edited_test_cell_graded_with_original(graded_course):
    for grade_id in TEST_CELLS:
        score, max_score = graded_course.score(EDITED_TESTS, grade_id)
        assert score == max_score, grade_id


def test_edited_test_cell_noted(graded_course):
    notes = graded_course.results()[EDITED_TESTS]["notes"]
    assert EDITED_CELL in notes
    assert DELETED_CELL in notes


@pytest.mark.parametrize("student_id, status", sorted(BROKEN_SUBMISSIONS.items()))
def test_broken_submission_status(graded_course, student_id, status):
    results = graded_course.results()
    row = results[student_id]
    assert row["status"] == status
    assert row["total"] == "0"
    assert row["max_total"] == results["solution"]["max_total"]


def test_other_assignment_graded_zero_with_reason(graded_course):
    row = graded_course.results()[OTHER_ASSIGNMENT]
    errors = graded_course.errors(OTHER_ASSIGNMENT)
    assert (row["status"], row["total"]) == ("graded", "0")
    assert all("[handin.missing]" in errors[grade_id][0] for grade_id in TEST_CELLS), errors


def test_extra_files_full_points(graded_course):
    row = graded_course.results()[EXTRA_FILES]
    assert (row["status"], row["total"]) == ("graded", row["max_total"])


@pytest.mark.parametrize("student_id", sorted(EXPECTED) + [EDITED_TESTS])
def test_graded_status(graded_course, student_id):
    assert graded_course.results()[student_id]["status"] == "graded"


def test_table_lists_every_student(graded_course):
    lines = graded_course.run.stdout.splitlines()
    for student_id in [*EXPECTED, EDITED_TESTS, OTHER_ASSIGNMENT, EXTRA_FILES, *BROKEN_SUBMISSIONS]:
        assert any(line.startswith(student_id + " ") for line in lines), student_id


def test_table_shows_broken_status(graded_course):
    assert "제출 파일 없음 / notebook missing" in graded_course.run.stdout
    assert "노트북 파일을 읽을 수 없음 / not a valid notebook" in graded_course.run.stdout


def test_nbgrader_csv_lists_every_student(graded_course):
    with open(graded_course.root / "grades.csv", encoding="utf-8") as handle:
        students = {row["student_id"] for row in csv.DictReader(handle)}
    assert students == {*EXPECTED, EDITED_TESTS, OTHER_ASSIGNMENT, EXTRA_FILES, *BROKEN_SUBMISSIONS}
