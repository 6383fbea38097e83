"""Autograde one student's submission: the grading unit of every backend of ``python -m autograder.grade``.

``grade_submission(job)`` runs ``nbgrader autograde --student=<id>`` in its own process with a time
limit, then reads the student's points from the gradebook. The sequential loop, the local worker
pool (``autograder.workers``) and Dask workers (``autograder.distributed``) all call it, so a
student gets the same row whichever backend graded the batch. An ``AutogradeJob`` contains only
plain values, so it can be pickled and sent to a Dask worker on another machine. There the course
root must be at the same path, and the gradebook must be a database server such as PostgreSQL.
"""

import ctypes
import hashlib
import json
import os
import shutil
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

_PR_SET_PDEATHSIG = 1
try:
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):  # not Linux
    _PRCTL = None

# Under the course root: the sha256 of each student's last graded notebook, and earlier autograded
# folders of students who handed in again.
GRADING_STATE_DIRECTORY = os.path.join("build", "grading-state")
PREVIOUS_DIRECTORY = os.path.join("build", "previous-autograded")


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
            command, cwd=course_root, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=_end_with_parent,
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


def _end_with_parent():
    """In the child before exec: ask Linux for SIGTERM when the grading process dies, even by SIGKILL.

    Without it, nbgrader would go on grading after the batch was killed, and a second run could grade
    the same student at the same time. The libc function is looked up before the fork.
    """
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGTERM)


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


def regrade_reason(job):
    """Return why a student that nbgrader graded before must be graded again without ``--force``, or None.

    - ``regraded_unfinished``: an earlier batch stopped while this student was graded. The autograded
      notebook is missing, or the gradebook lacks a test cell's score.
    - ``regraded_resubmission``: the submitted notebook differs from the one graded last time.
    nbgrader skips a student whose autograded folder exists, so both cases need ``--force``.
    """
    folder = Path(job.autograded_notebook).parent
    if job.force or not folder.exists():
        return None
    scores = report.read_scores(job.gradebook.db_url, job.student_id, job.max_scores)
    if not Path(job.autograded_notebook).is_file() or not scores or any(c.score is None for c in scores.values()):
        return "regraded_unfinished"
    graded = _graded_digest(job)
    if graded is None:
        # Graded before digests were recorded: a notebook saved after its autograded copy is new.
        changed = Path(job.submitted_notebook).stat().st_mtime > Path(job.autograded_notebook).stat().st_mtime
    else:
        changed = graded != _file_digest(job.submitted_notebook)
    return "regraded_resubmission" if changed else None


def _state_path(job):
    return Path(job.course_root, GRADING_STATE_DIRECTORY, f"{job.student_id}.json")


def _graded_digest(job):
    """Return the sha256 of the notebook graded last time, or None when no grading recorded it."""
    try:
        return json.loads(_state_path(job).read_text(encoding="utf-8")).get("submission_sha256")
    except (OSError, ValueError):
        return None


def _file_digest(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _keep_previous(job):
    """Move the last autograded folder to ``build/previous-autograded/<student>/<UTC time>/`` and return it."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = Path(job.course_root, PREVIOUS_DIRECTORY, job.student_id, stamp)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(Path(job.autograded_notebook).parent), target)
    return target


def _record_graded(job, digest):
    path = _state_path(job)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps({"submission_sha256": digest, "graded_at": time.time()}), encoding="utf-8")
    os.replace(temporary, path)


def grade_submission(job):
    """Autograde one student with nbgrader and return the ``report.StudentResult`` read from the gradebook.

    A student whose earlier grading stopped midway, or who handed in a new notebook, is graded again
    (see ``regrade_reason``). The previous autograded folder of a resubmission is kept.
    """
    put_python_scripts_on_path()
    reason = regrade_reason(job)
    digest = _file_digest(job.submitted_notebook)
    arguments = ["autograde", ASSIGNMENT_ID, f"--student={job.student_id}"]
    if job.force or reason:
        arguments.append("--force")
    if reason == "regraded_resubmission":
        _keep_previous(job)

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
    if result.status == "graded" and not any(cell.score is None for cell in result.scores.values()):
        _record_graded(job, digest)
    if reason:
        result.notes.append(reason)

    edited, deleted = report.find_changed_locked_cells(
        job.gradebook.db_url, nbformat.read(job.submitted_notebook, as_version=4)
    )
    if edited:
        result.notes.append(f"{report.bilingual(report.NOTES, 'locked_cell_edited')}: {', '.join(edited)}")
    if deleted:
        result.notes.append(f"{report.bilingual(report.NOTES, 'locked_cell_deleted')}: {', '.join(deleted)}")
    return result
