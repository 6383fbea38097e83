"""Grade the same submissions one by one, with local workers, into PostgreSQL and on Dask, and compare.

Each module fixture grades a new temporary course with ``python -m autograder.grade`` and real
nbgrader runs (the ``grade_submissions`` fixture of tests/conftest.py):

- ``sequential``: one worker and a SQLite gradebook, the reference for the others;
- ``parallel``: three local workers on one SQLite gradebook;
- ``postgres``: two local workers on a PostgreSQL gradebook of the ``postgres_server`` fixture;
- ``dask_scheduler_course``: a ``dask scheduler`` and two ``dask worker`` processes started here,
  as on separate machines, with a PostgreSQL gradebook;
- ``dask_local_course``: a Dask LocalCluster of two worker processes that the app starts;
- ``timed_out_course``: two local workers and a submission that never finishes.

Every run gets a broken notebook too, which must get the same row without nbgrader.
"""

import csv
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.course import ASSIGNMENT_ID, NOTEBOOK_NAME
from autograder.examples import make_submission

pytestmark = [pytest.mark.slow, pytest.mark.integration]

GRADED_EXAMPLES = ("blank", "fc1_512", "solution")
BROKEN = "not_json"
HANGING = "sleeps_forever"
LOCKED_MESSAGE = "database is locked"
HANGING_TIMEOUT_SECONDS = 45
DASK_START_SECONDS = 60


def _submissions(examples, hanging=False):
    """Return a ``write_submissions`` function that copies ``examples`` and adds the broken notebook."""

    def write(inbox, release_notebook):
        bundled = Path(__file__).resolve().parents[2] / "examples" / "submissions"
        for student_id in examples:
            notebook = inbox / student_id / ASSIGNMENT_ID / NOTEBOOK_NAME
            notebook.parent.mkdir(parents=True)
            notebook.write_bytes((bundled / student_id / ASSIGNMENT_ID / NOTEBOOK_NAME).read_bytes())

        broken = inbox / BROKEN / ASSIGNMENT_ID / NOTEBOOK_NAME
        broken.parent.mkdir(parents=True)
        broken.write_text("this is not JSON\n", encoding="utf-8")

        if hanging:
            answers = {"vgg11_model": "import time\ntime.sleep(3600)"}
            make_submission(release_notebook, answers, inbox / HANGING / ASSIGNMENT_ID / NOTEBOOK_NAME)

    return write


def _nbgrader_totals(course):
    """Return ``{student_id: (score, max_score)}`` from nbgrader's own export, grades.csv."""
    with open(course.root / "grades.csv", encoding="utf-8") as handle:
        return {row["student_id"]: (float(row["score"]), float(row["max_score"])) for row in csv.DictReader(handle)}


def _texts_with_lock_errors(course):
    """Return the names of the app's output and nbgrader logs that mention a locked SQLite database."""
    texts = {"stdout": course.run.stdout, "stderr": course.run.stderr}
    for log in sorted((course.root / "build" / "grading-logs").glob("*.log")):
        texts[log.name] = log.read_text(encoding="utf-8", errors="replace")
    return [name for name, text in texts.items() if LOCKED_MESSAGE in text]


def _assert_succeeded(course):
    assert course.run.returncode == 0, course.run.stdout + course.run.stderr


@pytest.fixture(scope="module")
def sequential(grade_submissions):
    return grade_submissions(_submissions(GRADED_EXAMPLES))


@pytest.fixture(scope="module")
def parallel(grade_submissions):
    return grade_submissions(_submissions(GRADED_EXAMPLES), ["--workers=3"])


@pytest.fixture(scope="module")
def postgres(grade_submissions, postgres_server):
    db_url = postgres_server.create_database("parallel_workers")
    return grade_submissions(_submissions(GRADED_EXAMPLES), ["--workers=2"], env={"NBGRADER_DB_URL": db_url})


@pytest.fixture(scope="module")
def dask_scheduler(tmp_path_factory, nbgrader_env):
    """Start ``dask scheduler`` and ``dask worker`` (two processes, one thread each) on 127.0.0.1; yield the address.

    The workers get the environment that the README gives workers on other machines: the venv's
    scripts on PATH and the repository on PYTHONPATH.
    """
    folder = tmp_path_factory.mktemp("dask")
    dask = str(Path(sys.executable).parent / "dask")
    scheduler_file = folder / "scheduler.json"
    with open(folder / "scheduler.log", "w", encoding="utf-8") as scheduler_log:
        scheduler = subprocess.Popen(
            [dask, "scheduler", "--host=127.0.0.1", "--port=0", "--no-dashboard", f"--scheduler-file={scheduler_file}"],
            cwd=folder,
            env=nbgrader_env,
            stdout=scheduler_log,
            stderr=subprocess.STDOUT,
        )
    workers = None
    try:
        deadline = time.monotonic() + DASK_START_SECONDS
        while not scheduler_file.is_file() and time.monotonic() < deadline and scheduler.poll() is None:
            time.sleep(0.2)
        assert scheduler_file.is_file(), (folder / "scheduler.log").read_text(encoding="utf-8")
        address = json.loads(scheduler_file.read_text(encoding="utf-8"))["address"]

        with open(folder / "workers.log", "w", encoding="utf-8") as workers_log:
            workers = subprocess.Popen(
                [dask, "worker", address, "--nworkers=2", "--nthreads=1", "--host=127.0.0.1", "--no-dashboard"],
                cwd=folder,
                env=nbgrader_env,
                stdout=workers_log,
                stderr=subprocess.STDOUT,
            )
        yield address
    finally:
        for process in (workers, scheduler):
            if process is not None:
                process.terminate()
                process.wait(timeout=60)


@pytest.fixture(scope="module")
def dask_scheduler_course(grade_submissions, postgres_server, dask_scheduler):
    db_url = postgres_server.create_database("dask_scheduler")
    return grade_submissions(
        _submissions(GRADED_EXAMPLES), [f"--scheduler={dask_scheduler}"], env={"NBGRADER_DB_URL": db_url}
    )


@pytest.fixture(scope="module")
def dask_local_course(grade_submissions, postgres_server):
    db_url = postgres_server.create_database("dask_local")
    return grade_submissions(_submissions(["blank"]), ["--dask-local=2"], env={"NBGRADER_DB_URL": db_url})


@pytest.fixture(scope="module")
def timed_out_course(grade_submissions):
    arguments = ["--workers=2", f"--student-timeout={HANGING_TIMEOUT_SECONDS}"]
    return grade_submissions(_submissions(["blank"], hanging=True), arguments)


def test_sequential_run_grades(sequential):
    _assert_succeeded(sequential)
    results = sequential.results()
    assert [results[student]["status"] for student in GRADED_EXAMPLES] == ["graded"] * len(GRADED_EXAMPLES)
    assert results["solution"]["total"] == results["solution"]["max_total"]
    assert results[BROKEN]["status"] == "invalid_notebook"


def test_parallel_equals_sequential(sequential, parallel):
    _assert_succeeded(parallel)
    assert "with 3 local worker(s)" in parallel.run.stderr
    assert parallel.results() == sequential.results()
    assert _nbgrader_totals(parallel) == _nbgrader_totals(sequential)


def test_parallel_sqlite_never_locked(sequential, parallel):
    assert _texts_with_lock_errors(sequential) == []
    assert _texts_with_lock_errors(parallel) == []


def test_postgres_equals_sqlite(sequential, postgres):
    _assert_succeeded(postgres)
    assert "Gradebook: postgresql+psycopg://" in postgres.run.stderr
    assert not (postgres.root / "gradebook.db").exists()
    assert postgres.results() == sequential.results()
    assert _nbgrader_totals(postgres) == _nbgrader_totals(sequential)


def test_postgres_feedback_written(postgres):
    for student_id in GRADED_EXAMPLES:
        assert postgres.feedback(student_id).is_file(), student_id


def test_dask_scheduler_equals_sequential(sequential, dask_scheduler_course):
    _assert_succeeded(dask_scheduler_course)
    assert "Dask worker(s)" in dask_scheduler_course.run.stderr
    assert dask_scheduler_course.results() == sequential.results()
    assert _nbgrader_totals(dask_scheduler_course) == _nbgrader_totals(sequential)


def test_dask_local_cluster_equals_sequential(sequential, dask_local_course):
    _assert_succeeded(dask_local_course)
    assert "on a LocalCluster on 127.0.0.1" in dask_local_course.run.stderr
    assert "with 2 Dask worker(s)" in dask_local_course.run.stderr
    expected = sequential.results()
    results = dask_local_course.results()
    assert results == {student_id: expected[student_id] for student_id in ("blank", BROKEN)}


def test_timeout_row_in_parallel(timed_out_course):
    _assert_succeeded(timed_out_course)
    row = timed_out_course.results()[HANGING]
    assert row["status"] == "timed_out"
    assert row["notes"] == f"> {HANGING_TIMEOUT_SECONDS} s"
    assert row["total"] == "0"
    assert row["max_total"] == "10"


def test_timeout_spares_other_students(timed_out_course):
    results = timed_out_course.results()
    assert results["blank"]["status"] == "graded"
    assert results[BROKEN]["status"] == "invalid_notebook"
