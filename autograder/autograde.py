"""Autograde one student's submission: the grading unit of every backend of ``python -m autograder.grade``.

``grade_submission(job)`` runs ``nbgrader autograde --student=<id>`` in its own process with a time
limit, then reads the student's points from the gradebook. The sequential loop, the local worker
pool (``autograder.workers``) and Dask workers (``autograder.distributed``) all call it, so a
student gets the same row whichever backend graded the batch. An ``AutogradeJob`` contains only
plain values, so it can be pickled and sent to a Dask worker on another machine. There the course
root must be at the same path, and the gradebook must be a database server such as PostgreSQL.
"""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from . import report
from .course import ASSIGNMENT_ID
from .gradebook import GradebookLocation, display_url

# Time that nbgrader gets to clean up after SIGINT before its process group is killed.
INTERRUPT_GRACE_SECONDS = 30

DB_URL_OPTION = "--CourseDirectory.db_url="


def put_python_scripts_on_path():
    """Prepend this Python's scripts folder to PATH, for this process and the nbgrader subprocesses.

    nbgrader 0.9.6 creates a new gradebook by running the ``alembic`` command found on PATH, so
    ``<venv>/bin/python -m autograder.grade`` fails without an activated venv unless its ``bin`` is on PATH.
    """
    scripts = str(Path(sys.executable).parent)
    paths = os.environ.get("PATH", "").split(os.pathsep)
    if scripts not in paths:
        os.environ["PATH"] = os.pathsep.join([scripts, *paths])


def run_nbgrader(arguments, course_root, log_path, timeout=None, gradebook=None):
    """Run ``python -m nbgrader <arguments>`` in ``course_root`` with its output in ``log_path``.

    ``gradebook``, a ``GradebookLocation``, selects the database URL and course id on the command
    line, which takes priority over nbgrader_config.py. The log shows the URL without its password.

    Returns the exit status, or None when the process ran longer than ``timeout`` seconds. Then it
    gets SIGINT, which makes nbgrader shut its kernel down and remove the partial output, and its
    process group is killed ``INTERRUPT_GRACE_SECONDS`` later if it is still running. A kernel left
    behind exits by itself because ipykernel stops when its parent process is gone.
    """
    options = [f"--CourseDirectory.root={course_root}"]
    if gradebook is not None:
        options += gradebook.nbgrader_options()
    command = [sys.executable, "-m", "nbgrader", *arguments, *options]
    logged_command = [_hide_password(part) for part in command]

    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log_file:
        log_file.write("$ " + " ".join(logged_command) + "\n")
        log_file.flush()
        process = subprocess.Popen(
            command, cwd=course_root, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=INTERRUPT_GRACE_SECONDS)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            return None


def _hide_password(argument):
    if argument.startswith(DB_URL_OPTION):
        return DB_URL_OPTION + display_url(argument.removeprefix(DB_URL_OPTION))
    return argument


@dataclass(frozen=True)
class AutogradeJob:
    """Everything that ``grade_submission`` needs to autograde one student, as picklable values.

    ``batch_started`` is the batch's start as a Unix time. An autograded notebook older than that
    was left by an earlier run and reused by nbgrader, which autogrades a student only once
    unless ``force`` is set.
    """

    course_root: str
    gradebook: GradebookLocation
    student_id: str
    submitted_notebook: str
    autograded_notebook: str
    log_path: str
    timeout: int | None
    force: bool
    max_scores: dict[str, float] = field(default_factory=dict)
    batch_started: float = 0.0


def problem_result(submission, max_scores):
    """Return the row of a submission that is not passed to nbgrader, with the reason as its status."""
    result = report.StudentResult(submission.student_id, submission.problem, detail=submission.detail)
    result.scores = report.no_scores(max_scores)
    return result


def failed_result(student_id, max_scores, detail):
    """Return the row of a student whose grading unit raised, for example on a Dask worker that died."""
    return report.StudentResult(student_id, "autograde_failed", scores=report.no_scores(max_scores), detail=detail)


def grade_submission(job):
    """Autograde one student with nbgrader and return the ``report.StudentResult`` read from the gradebook."""
    put_python_scripts_on_path()
    arguments = ["autograde", ASSIGNMENT_ID, f"--student={job.student_id}"]
    if job.force:
        arguments.append("--force")

    started = time.time()
    exit_status = run_nbgrader(arguments, job.course_root, job.log_path, job.timeout, job.gradebook)
    seconds = time.time() - started

    result = report.StudentResult(
        job.student_id, "graded", scores=report.no_scores(job.max_scores), log_path=job.log_path, seconds=seconds
    )
    scores = report.read_scores(job.gradebook.db_url, job.student_id, job.max_scores)
    autograded = Path(job.autograded_notebook)

    if exit_status is None:
        result.status = "timed_out"
        result.detail = f"> {job.timeout} s"
    elif exit_status != 0 or not autograded.is_file():
        result.status = "autograde_failed"
        result.detail = job.log_path
    elif scores is None:
        result.status = "not_graded"
    elif autograded.stat().st_mtime < job.batch_started:
        result.status = "reused"
    if scores and result.status not in ("timed_out", "autograde_failed"):
        result.scores = scores
        if any(cell.score is None for cell in scores.values()):
            result.notes.append("ungraded_cells")

    edited, deleted = report.find_changed_locked_cells(
        job.gradebook.db_url, nbformat.read(job.submitted_notebook, as_version=4)
    )
    if edited:
        result.notes.append(f"{report.bilingual(report.NOTES, 'locked_cell_edited')}: {', '.join(edited)}")
    if deleted:
        result.notes.append(f"{report.bilingual(report.NOTES, 'locked_cell_deleted')}: {', '.join(deleted)}")
    return result
