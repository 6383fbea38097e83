"""Grade every submission with nbgrader and print a table of points per test cell.

``python -m autograder.grade`` grades ``assignments/<student_id>/Assignment1/Assignment1_blank.ipynb``.
When ``assignments/`` contains no student folder, it grades the bundled examples from
``examples/submissions/`` instead, in a scratch course under ``build/examples-course/``.

Steps, each a ``python -m nbgrader`` subprocess run in the course root:

1. ``generate_assignment --force`` stores the source notebook's cells in the gradebook. Its release
   copy goes to ``build/grading-release/`` so that the committed ``release/`` stays as it is.
2. ``autograde --student=<id>``, one process per student, so one student's failure, hang or crash
   cannot stop the others. A submission that nbgrader cannot grade (no notebook, wrong file name,
   not a notebook) is not passed to nbgrader and gets a row that states why.
3. ``generate_feedback --force`` writes ``feedback/<id>/Assignment1/Assignment1_blank.html``.
4. ``export`` writes nbgrader's grades CSV (``CsvExportPlugin.to`` in nbgrader_config.py).

The table is read from the gradebook with ``nbgrader.api.Gradebook``, never from nbgrader's
output or exit status. nbgrader exits with 0 when tests fail, and with 1 when one student failed.
The instructor's batch report (``autograder.report_page``) goes to ``<course root>/reports/``. It
adds the failure reasons of each test cell, read from the error outputs in ``autograded/``.

The exit status is 1 when generate_assignment fails or when a bundled example gets other points
than ``autograder.examples.EXPECTED``, and 0 otherwise, also when some students could not be graded.
"""

import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from traitlets import Bool, Integer, Unicode, default
from traitlets.config import Application, PyFileConfigLoader

from . import item_analysis, report, report_page
from .course import (
    ASSIGNMENT_ID,
    CONFIG_NAME,
    NOTEBOOK_ID,
    NOTEBOOK_NAME,
    find_course_root,
    list_submissions,
    notebook_differences,
)
from .examples import EXPECTED as EXAMPLES_EXPECTED

NO_SUBMISSIONS = (
    "{inbox}에 학생 제출물이 없습니다. 대신 {examples}의 예시 제출물을 {course}에서 채점합니다.\n"
    "No student submissions in {inbox}. Grading the bundled examples from {examples} in {course} instead."
)

# Scratch course config: the course's own config with the root, gradebook and CSV moved here.
EXAMPLES_CONFIG = """\
# Written by `python -m autograder.grade`, which rebuilds this folder on each run.
import os

c = get_config()  # noqa: F821
load_subconfig({course_config!r})  # noqa: F821

here = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.root = here
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(here, "gradebook.db")
c.CsvExportPlugin.to = os.path.join(here, "grades.csv")
"""

GRADING_RELEASE_DIRECTORY = os.path.join("build", "grading-release")
RESULTS_CSV_NAME = "grades_by_test_cell.csv"

# Time that nbgrader gets to clean up after SIGINT before its process group is killed.
INTERRUPT_GRACE_SECONDS = 30


def put_python_scripts_on_path():
    """Prepend this Python's scripts folder to PATH, for this process and the nbgrader subprocesses.

    nbgrader 0.9.6 creates a new gradebook by running the ``alembic`` command found on PATH, so
    ``<venv>/bin/python -m autograder.grade`` fails without an activated venv unless its ``bin`` is on PATH.
    """
    scripts = str(Path(sys.executable).parent)
    paths = os.environ.get("PATH", "").split(os.pathsep)
    if scripts not in paths:
        os.environ["PATH"] = os.pathsep.join([scripts, *paths])


def load_course_directory(root):
    """Return nbgrader's ``CourseDirectory`` and the ``Config`` loaded from ``<root>/nbgrader_config.py``."""
    config = PyFileConfigLoader(CONFIG_NAME, path=str(root)).load_config()
    return CourseDirectory(config=config), config


def prepare_examples_course(repo_root, course_root):
    """Rebuild ``course_root`` as a course with the repository's source and the bundled examples as submissions."""
    submissions = Path(repo_root) / "examples" / "submissions"
    if not submissions.is_dir():
        raise FileNotFoundError(
            f"Example submissions not found in {submissions}. Run `python -m autograder.examples` first."
        )

    repo_coursedir, _ = load_course_directory(repo_root)
    course_root = Path(course_root)
    if course_root.exists():
        shutil.rmtree(course_root)
    course_root.mkdir(parents=True)
    ignore = shutil.ignore_patterns(*repo_coursedir.ignore)
    shutil.copytree(Path(repo_root) / "source", course_root / "source", ignore=ignore)
    shutil.copytree(submissions, course_root / "assignments")
    config = EXAMPLES_CONFIG.format(course_config=str(Path(repo_root) / CONFIG_NAME))
    (course_root / CONFIG_NAME).write_text(config, encoding="utf-8")
    return course_root


def run_nbgrader(arguments, course_root, log_path, timeout=None):
    """Run ``python -m nbgrader <arguments>`` in ``course_root`` with its output in ``log_path``.

    Returns the exit status, or None when the process ran longer than ``timeout`` seconds. Then it
    gets SIGINT, which makes nbgrader shut its kernel down and remove the partial output, and its
    process group is killed ``INTERRUPT_GRACE_SECONDS`` later if it is still running. A kernel left
    behind exits by itself because ipykernel stops when its parent process is gone.
    """
    command = [sys.executable, "-m", "nbgrader", *arguments, f"--CourseDirectory.root={course_root}"]
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log_file:
        log_file.write("$ " + " ".join(command) + "\n")
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


class GradeApp(Application):
    """Autograde a course's submissions with nbgrader and print the points per test cell."""

    name = "python -m autograder.grade"
    description = __doc__
    examples = (
        "python -m autograder.grade                   # grade assignments/, or the examples when it is empty\n"
        "python -m autograder.grade --force           # regrade submissions that were graded before\n"
        "python -m autograder.grade --examples        # grade the bundled examples\n"
        "python -m autograder.grade --student-timeout=3600"
    )

    course_root = Unicode("", help="Course root, the folder with nbgrader_config.py (default: this repository).").tag(
        config=True
    )
    force = Bool(False, help="Regrade submissions that nbgrader autograded before.").tag(config=True)
    use_examples = Bool(False, help="Grade the bundled examples even when assignments/ has submissions.").tag(
        config=True
    )
    student_timeout = Integer(
        None,
        allow_none=True,
        help=(
            "Maximum time in seconds for one student's autograde process, after which it is stopped. "
            "Default: BoundedExecute.notebook_timeout from nbgrader_config.py plus 600, or no limit without it."
        ),
    ).tag(config=True)

    aliases = {
        "root": "GradeApp.course_root",
        "student-timeout": "GradeApp.student_timeout",
        "log-level": "Application.log_level",
    }
    flags = {
        "force": ({"GradeApp": {"force": True}}, force.help),
        "examples": ({"GradeApp": {"use_examples": True}}, use_examples.help),
        "debug": ({"Application": {"log_level": logging.DEBUG}}, "Set the log level to DEBUG."),
    }

    @default("log_level")
    def _log_level_default(self):
        return logging.INFO

    def initialize(self, argv=None):
        super().initialize(argv)
        self.course_root = str(Path(self.course_root).resolve() if self.course_root else find_course_root())
        # GradeApp options may also be set in nbgrader_config.py, but command-line values take priority.
        self.load_config_file(CONFIG_NAME, path=self.course_root)

    def start(self):
        put_python_scripts_on_path()
        repo_root = Path(self.course_root)
        lock_path = repo_root / "build" / "grading.lock"
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        with open(lock_path, "a+", encoding="utf-8") as lock_file:
            # Two runs on one course would overwrite each other's gradebook rows, logs and
            # autograded folders, so a second run stops here. The lock ends with this process.
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                lock_file.seek(0)
                self.log.error(
                    "Another grading run is using %s (%s). Wait for it to finish, then run again.",
                    repo_root,
                    lock_file.read().strip() or "process id unknown",
                )
                self.exit(1)
            lock_file.seek(0)
            lock_file.truncate()
            lock_file.write(f"process {os.getpid()}\n")
            lock_file.flush()
            self.exit(self._grade_selected_course(repo_root))

    def _grade_selected_course(self, repo_root):
        """Grade the inbox, or the bundled examples when it is empty or --examples is set, and return the exit status."""
        coursedir, _ = load_course_directory(repo_root)
        inbox = Path(coursedir.format_path(coursedir.submitted_directory, ".", ".")).resolve()
        has_submissions = bool(list_submissions(inbox))

        if has_submissions and not self.use_examples:
            course_root = repo_root
            expected = {}
        else:
            course_root = repo_root / "build" / "examples-course"
            if not has_submissions:
                print(
                    NO_SUBMISSIONS.format(
                        inbox=_relative(inbox, repo_root) + "/",
                        examples="examples/submissions/",
                        course=_relative(course_root, repo_root) + "/",
                    )
                )
            prepare_examples_course(repo_root, course_root)
            expected = EXAMPLES_EXPECTED

        return self.grade_course(course_root, repo_root, expected)

    def grade_course(self, course_root, repo_root, expected):
        """Grade every submission of the course at ``course_root`` and return the exit status for the app."""
        started = time.time()
        coursedir, config = load_course_directory(course_root)
        logs = Path(course_root) / "build" / "grading-logs"
        inbox = Path(coursedir.format_path(coursedir.submitted_directory, ".", ".")).resolve()
        submissions = list_submissions(inbox)
        self.log.info("Grading %d student folder(s) from %s", len(submissions), inbox)

        if not self._generate_assignment(course_root, repo_root, logs):
            return 1

        results = self._autograde(course_root, coursedir, submissions, logs, config, started)
        self._generate_feedback(course_root, coursedir, results, logs)

        # Students whose folder nbgrader never saw still get a row of zeros in nbgrader's CSV.
        with Gradebook(coursedir.db_url) as gradebook:
            for result in results:
                gradebook.update_or_create_student(result.student_id)

        csv_path = Path(course_root, config.CsvExportPlugin.get("to") or "grades.csv")
        if run_nbgrader(["export"], course_root, logs / "export.log") != 0 or not csv_path.is_file():
            self.log.error("nbgrader export failed; see %s", logs / "export.log")
        results_csv = Path(course_root) / RESULTS_CSV_NAME
        cell_names = list(report.read_max_scores(coursedir.db_url))
        report.write_csv(results, cell_names, results_csv)
        report_html = self._write_batch_report(course_root, coursedir, results)

        print()
        print(report.format_table(results, cell_names))
        notes = report.format_notes(results)
        if notes:
            print(notes)
        print()
        print(f"nbgrader CSV:           {csv_path}")
        print(f"points per test cell:   {results_csv}")
        print(f"feedback HTML:          {Path(coursedir.format_path(coursedir.feedback_directory, '.', '.')).resolve()}")
        print(f"nbgrader logs:          {logs}")
        if report_html:
            print(f"채점 보고서 / batch report: {report_html}")
        print(f"time: {time.time() - started:.0f} s")

        mismatches = report.compare_with_expected(results, expected)
        for mismatch in mismatches:
            self.log.error("Example graded differently than expected: %s", mismatch)
        return 1 if mismatches else 0

    def _write_batch_report(self, course_root, coursedir, results):
        """Write the instructor's report into ``<course_root>/reports/`` and return the HTML page's path.

        Returns None and logs the error when a report file cannot be written, because the grades are
        already stored and the table still gets printed.
        """
        max_scores = report.read_max_scores(coursedir.db_url)
        outcomes = {}
        for result in results:
            folder = coursedir.format_path(coursedir.autograded_directory, result.student_id, ASSIGNMENT_ID)
            notebook = Path(folder, NOTEBOOK_NAME)
            outcomes[result.student_id] = item_analysis.read_outcomes(result, list(max_scores), notebook)
        item_stats = item_analysis.analyse_items(outcomes, max_scores)
        directory = Path(course_root) / report_page.REPORT_DIRECTORY
        try:
            return report_page.write_report(results, outcomes, item_stats, directory)
        except OSError as error:
            self.log.error("Failed to write the batch report to %s: %s", directory, error)
            return None

    def _generate_assignment(self, course_root, repo_root, logs):
        log_path = logs / "generate_assignment.log"
        self.log.info("Storing the source notebook in the gradebook (nbgrader generate_assignment)")
        arguments = [
            "generate_assignment",
            ASSIGNMENT_ID,
            "--force",
            f"--CourseDirectory.release_directory={GRADING_RELEASE_DIRECTORY}",
        ]
        if run_nbgrader(arguments, course_root, log_path) != 0:
            self.log.error("nbgrader generate_assignment failed; see %s. Its last lines:\n%s", log_path, _tail(log_path))
            return False

        regenerated = Path(course_root, GRADING_RELEASE_DIRECTORY, ASSIGNMENT_ID, NOTEBOOK_NAME)
        committed = Path(repo_root, "release", ASSIGNMENT_ID, NOTEBOOK_NAME)
        if committed.is_file():
            differences = notebook_differences(regenerated, committed)
            if differences:
                self.log.warning(
                    "%s differs from the notebook generated from source/ (%s). Students may have an old "
                    "release. Regenerate it with `nbgrader generate_assignment %s --force`.",
                    committed,
                    "; ".join(differences[:3]),
                    ASSIGNMENT_ID,
                )
        return True

    def _student_timeout(self, config):
        if self.student_timeout is not None:
            return self.student_timeout or None
        notebook_timeout = config.BoundedExecute.get("notebook_timeout")
        return notebook_timeout + 600 if notebook_timeout else None

    def _autograde(self, course_root, coursedir, submissions, logs, config, started):
        timeout = self._student_timeout(config)
        max_scores = report.read_max_scores(coursedir.db_url)
        results = []
        with logging_redirect_tqdm(loggers=[self.log]):
            for submission in tqdm(submissions, desc="autograde", unit="student"):
                if submission.problem:
                    self.log.warning(
                        "Not grading %s: %s (%s)", submission.student_id, submission.problem, submission.detail
                    )
                    result = report.StudentResult(submission.student_id, submission.problem, detail=submission.detail)
                    result.scores = report.no_scores(max_scores)
                    results.append(result)
                    continue
                results.append(self._autograde_student(course_root, coursedir, submission, logs, timeout, max_scores, started))
        return results

    def _autograde_student(self, course_root, coursedir, submission, logs, timeout, max_scores, started):
        student_id = submission.student_id
        log_path = logs / f"{student_id}-autograde.log"
        arguments = ["autograde", ASSIGNMENT_ID, f"--student={student_id}"]
        if self.force:
            arguments.append("--force")

        student_started = time.time()
        exit_status = run_nbgrader(arguments, course_root, log_path, timeout)
        self.log.info("Autograded %s in %.0f s (exit status %s)", student_id, time.time() - student_started, exit_status)

        result = report.StudentResult(student_id, "graded", scores=report.no_scores(max_scores), log_path=str(log_path))
        scores = report.read_scores(coursedir.db_url, student_id, max_scores)
        autograded = Path(coursedir.format_path(coursedir.autograded_directory, student_id, ASSIGNMENT_ID), NOTEBOOK_NAME)

        if exit_status is None:
            result.status = "timed_out"
            result.detail = f"> {timeout} s"
        elif exit_status != 0 or not autograded.is_file():
            result.status = "autograde_failed"
            result.detail = str(log_path)
        elif scores is None:
            result.status = "not_graded"
        elif autograded.stat().st_mtime < started:
            result.status = "reused"
        if scores and result.status not in ("timed_out", "autograde_failed"):
            result.scores = scores
            if any(cell.score is None for cell in scores.values()):
                result.notes.append("ungraded_cells")

        edited, deleted = report.find_changed_locked_cells(
            coursedir.db_url, nbformat.read(str(submission.notebook), as_version=4)
        )
        if edited:
            result.notes.append(f"{report.bilingual(report.NOTES, 'locked_cell_edited')}: {', '.join(edited)}")
        if deleted:
            result.notes.append(f"{report.bilingual(report.NOTES, 'locked_cell_deleted')}: {', '.join(deleted)}")
        return result

    def _generate_feedback(self, course_root, coursedir, results, logs):
        graded = [result for result in results if result.status in ("graded", "reused")]
        if not graded:
            return
        log_path = logs / "generate_feedback.log"
        self.log.info("Writing feedback HTML for %d student(s) (nbgrader generate_feedback)", len(graded))
        if run_nbgrader(["generate_feedback", ASSIGNMENT_ID, "--force"], course_root, log_path) != 0:
            self.log.error("nbgrader generate_feedback failed for at least one student; see %s", log_path)

        for result in graded:
            html = Path(coursedir.format_path(coursedir.feedback_directory, result.student_id, ASSIGNMENT_ID))
            html = html / f"{NOTEBOOK_ID}.html"
            if html.is_file():
                result.feedback_path = str(html)
            else:
                result.notes.append("feedback_missing")


def _tail(path, lines=20):
    return "\n".join(Path(path).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])


def _relative(path, root):
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


main = GradeApp.launch_instance

if __name__ == "__main__":
    main()
