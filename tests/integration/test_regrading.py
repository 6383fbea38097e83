"""A batch killed midway finishes on the next run, and a resubmission is graded again (real nbgrader runs).

One course with three students is graded by ``python -m autograder.grade``, which is killed with SIGKILL
while it grades the second student. The same command then finishes the batch. Then the first student
hands in a new notebook, and a third run grades only that one and keeps the earlier autograded copy.
"""

import os
import signal
import subprocess
import time

import pytest
from nbgrader.api import Gradebook

from autograder.course import NOTEBOOK_NAME, TEST_CELLS
from autograder.examples import submission_path
from tests.conftest import grading_command, make_course, regrade

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# Student id -> bundled example. Students are graded in the order of their ids.
STUDENTS = {"a_first": "blank", "b_second": "fc1_512", "c_third": "solution"}
TOTALS = {"blank": "0", "fc1_512": "8", "solution": "10"}


def _wait_for(path, timeout=900):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.5)


def _nbgrader_processes(root):
    listing = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True).stdout
    return [line for line in listing.splitlines() if "nbgrader" in line and str(root) in line]


@pytest.fixture(scope="module")
def course(tmp_path_factory, repo_root, nbgrader_env):
    examples = repo_root / "examples" / "submissions"

    def write(inbox, release_notebook):
        for student_id, example in STUDENTS.items():
            target = submission_path(inbox, student_id)
            target.parent.mkdir(parents=True)
            target.write_bytes(submission_path(examples, example).read_bytes())

    root = make_course(tmp_path_factory, repo_root, write)
    killed = subprocess.Popen(grading_command(root), cwd=root, env=nbgrader_env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_for(root / "build" / "grading-logs" / "b_second-autograde.log")
    time.sleep(5)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait()
    time.sleep(5)
    leftover = _nbgrader_processes(root)

    finished = regrade(root, nbgrader_env)
    return {"root": root, "leftover": leftover, "finished": finished}


def _submissions(root, student_id):
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        return len(gradebook.find_student(student_id).submissions)


def test_killed_batch_leaves_no_nbgrader(course):
    assert course["leftover"] == []


def test_rerun_succeeds(course):
    run = course["finished"].run
    assert run.returncode == 0, run.stdout + run.stderr


@pytest.mark.parametrize("student_id", sorted(STUDENTS))
def test_rerun_totals(course, student_id):
    assert course["finished"].results()[student_id]["total"] == TOTALS[STUDENTS[student_id]]


def test_rerun_reuses_finished_student(course):
    assert course["finished"].results()["a_first"]["status"] == "reused"


@pytest.mark.parametrize("student_id", sorted(STUDENTS))
def test_rerun_one_submission_each(course, student_id):
    assert _submissions(course["root"], student_id) == 1


@pytest.fixture(scope="module")
def resubmitted(course, repo_root, nbgrader_env):
    root = course["root"]
    solution = submission_path(repo_root / "examples" / "submissions", "solution")
    submission_path(root / "assignments", "a_first").write_bytes(solution.read_bytes())
    return regrade(root, nbgrader_env)


def test_resubmission_graded(resubmitted):
    row = resubmitted.results()["a_first"]
    assert (row["status"], row["total"]) == ("graded", "10")


def test_resubmission_noted(resubmitted):
    assert "resubmission graded" in resubmitted.results()["a_first"]["notes"]


def test_resubmission_keeps_previous_copy(resubmitted):
    kept = list((resubmitted.root / "build" / "previous-autograded" / "a_first").glob(f"*/{NOTEBOOK_NAME}"))
    assert len(kept) == 1


def test_resubmission_others_reused(resubmitted):
    assert [resubmitted.results()[s]["status"] for s in ("b_second", "c_third")] == ["reused", "reused"]


def test_resubmission_one_submission(resubmitted):
    assert _submissions(resubmitted.root, "a_first") == 1


def test_resubmission_scores_every_cell(resubmitted):
    assert all(resubmitted.score("a_first", cell)[0] > 0 for cell in TEST_CELLS)
