"""Grade every submission with nbgrader and print a table of points per test cell.

``python -m autograder.grade`` grades ``assignments/<student_id>/Assignment1/Assignment1_blank.ipynb``.
When ``assignments/`` contains no student folder, it grades the bundled examples from
``examples/submissions/`` instead, in a scratch course under ``build/examples-course/``.

Steps, each a ``python -m nbgrader`` subprocess run in the course root:

1. ``generate_assignment --force`` stores the source notebook's cells in the gradebook. Its release
   copy goes to ``build/grading-release/`` so that the committed ``release/`` stays as it is.
2. ``autograde --student=<id>``, one process per student, so one student's failure, hang or crash
   cannot stop the others. A submission that nbgrader cannot grade (no notebook, wrong file name,
   not a notebook) is not passed to nbgrader and gets a row that states why. ``autograder.autograde``
   grades one student. ``--workers=K`` runs K of them at once on this machine
   (``autograder.workers``), and ``--dask-local=N`` or ``--scheduler=<address>`` runs them on a Dask
   cluster (``autograder.distributed``).
3. ``generate_feedback --force`` writes ``feedback/<id>/Assignment1/Assignment1_blank.html``.
4. ``export`` writes nbgrader's grades CSV (``CsvExportPlugin.to`` in nbgrader_config.py).

The table is read from the gradebook with ``nbgrader.api.Gradebook``, never from nbgrader's
output or exit status. nbgrader exits with 0 when tests fail, and with 1 when one student failed.
The instructor's batch report (``autograder.report_page``) goes to ``<course root>/reports/``. It
adds the failure reasons of each test cell, read from the error outputs in ``autograded/``.

Every step gets the gradebook URL of nbgrader_config.py (``CourseDirectory.db_url``, or the
``NBGRADER_DB_URL`` environment variable) and a course id on its command line
(``autograder.gradebook``). A SQLite URL gets a busy timeout, so that parallel workers wait for
each other's writes.

The exit status is 1 when generate_assignment fails, when the options or the Dask cluster cannot
grade the batch, or when a bundled example gets other points than ``autograder.examples.EXPECTED``.
It is 0 otherwise, also when some students could not be graded.
"""

import fcntl
import logging
import os
import shutil
import time
from pathlib import Path

from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm
from traitlets import Bool, Integer, TraitError, Unicode, default, validate
from traitlets.config import Application, PyFileConfigLoader

from . import distributed, item_analysis, report, report_page, workers
from .autograde import AutogradeJob, failed_result, problem_result, put_python_scripts_on_path, run_nbgrader
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
from .gradebook import GradebookLocation, is_sqlite

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


class GradeApp(Application):
    """Autograde a course's submissions with nbgrader and print the points per test cell."""

    name = "python -m autograder.grade"
    description = __doc__
    examples = (
        "python -m autograder.grade                   # grade assignments/, or the examples when it is empty\n"
        "python -m autograder.grade --force           # regrade submissions that were graded before\n"
        "python -m autograder.grade --examples        # grade the bundled examples\n"
        "python -m autograder.grade --student-timeout=3600\n"
        "python -m autograder.grade --workers=4       # four students at once on this machine\n"
        "python -m autograder.grade --dask-local=4    # the same on a Dask LocalCluster of four processes\n"
        "NBGRADER_DB_URL=postgresql+psycopg://grader@dbhost/course python -m autograder.grade "
        "--scheduler=tcp://scheduler:8786"
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
    workers = Integer(
        1,
        help=(
            "Number of students autograded at once on this machine, each in its own nbgrader process. "
            "Each process runs one notebook kernel, so more workers than CPU cores rarely help."
        ),
    ).tag(config=True)
    dask_scheduler = Unicode(
        "",
        help=(
            "Address of a running Dask scheduler, such as tcp://host:8786, whose workers autograde the "
            "students. The workers need the course root at the same path and a gradebook that all of them "
            "reach, such as PostgreSQL (NBGRADER_DB_URL)."
        ),
    ).tag(config=True)
    dask_local_workers = Integer(
        0,
        help="Autograde on a Dask LocalCluster of this many worker processes on 127.0.0.1 (0: no Dask).",
    ).tag(config=True)

    aliases = {
        "root": "GradeApp.course_root",
        "student-timeout": "GradeApp.student_timeout",
        "workers": "GradeApp.workers",
        "scheduler": "GradeApp.dask_scheduler",
        "dask-local": "GradeApp.dask_local_workers",
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

    @validate("workers")
    def _validate_workers(self, proposal):
        if proposal.value < 1:
            raise TraitError(f"GradeApp.workers must be at least 1, got {proposal.value}")
        return proposal.value

    @validate("dask_local_workers")
    def _validate_dask_local_workers(self, proposal):
        if proposal.value < 0:
            raise TraitError(f"GradeApp.dask_local_workers must be 0 (no Dask) or more, got {proposal.value}")
        return proposal.value

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
        # Every nbgrader step gets this URL on its command line, so all of them and the reads here use
        # one gradebook, and SQLite waits for concurrent writers instead of failing.
        gradebook = GradebookLocation.of_course(coursedir)
        logs = Path(course_root) / "build" / "grading-logs"
        inbox = Path(coursedir.format_path(coursedir.submitted_directory, ".", ".")).resolve()
        submissions = list_submissions(inbox)
        self.log.info("Grading %d student folder(s) from %s", len(submissions), inbox)
        self.log.info("Gradebook: %s", gradebook)

        backend_error = self._check_backend(gradebook.db_url)
        if backend_error:
            self.log.error("%s", backend_error)
            return 1
        if not self._generate_assignment(course_root, repo_root, logs, gradebook):
            return 1

        try:
            results = self._autograde(course_root, coursedir, submissions, logs, config, started, gradebook)
        except distributed.ClusterUnavailable as error:
            self.log.error("%s", error)
            return 1
        self._generate_feedback(course_root, coursedir, results, logs, gradebook)

        # Students whose folder nbgrader never saw still get a row of zeros in nbgrader's CSV.
        with Gradebook(gradebook.db_url, gradebook.course_id) as nbgrader_gradebook:
            for result in results:
                nbgrader_gradebook.update_or_create_student(result.student_id)

        csv_path = Path(course_root, config.CsvExportPlugin.get("to") or "grades.csv")
        export_status = run_nbgrader(["export"], course_root, logs / "export.log", gradebook=gradebook)
        if export_status != 0 or not csv_path.is_file():
            self.log.error("nbgrader export failed; see %s", logs / "export.log")
        results_csv = Path(course_root) / RESULTS_CSV_NAME
        cell_names = list(report.read_max_scores(gradebook.db_url))
        report.write_csv(results, cell_names, results_csv)
        report_html = self._write_batch_report(course_root, coursedir, results, gradebook.db_url)

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

    def _write_batch_report(self, course_root, coursedir, results, db_url):
        """Write the instructor's report into ``<course_root>/reports/`` and return the HTML page's path.

        Returns None and logs the error when a report file cannot be written, because the grades are
        already stored and the table still gets printed.
        """
        max_scores = report.read_max_scores(db_url)
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

    def _generate_assignment(self, course_root, repo_root, logs, gradebook=None):
        log_path = logs / "generate_assignment.log"
        self.log.info("Storing the source notebook in the gradebook (nbgrader generate_assignment)")
        arguments = [
            "generate_assignment",
            ASSIGNMENT_ID,
            "--force",
            f"--CourseDirectory.release_directory={GRADING_RELEASE_DIRECTORY}",
        ]
        if run_nbgrader(arguments, course_root, log_path, gradebook=gradebook) != 0:
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

    def _check_backend(self, db_url):
        """Return why the selected workers cannot grade with this gradebook or options, or None when they can."""
        if self.dask_scheduler and self.dask_local_workers:
            return "Set either --scheduler or --dask-local, not both."
        if (self.dask_scheduler or self.dask_local_workers) and self.workers != 1:
            return (
                "--workers sets the local worker pool. With Dask, the cluster's worker threads set how many "
                "students run at once."
            )
        if self.dask_scheduler and is_sqlite(db_url):
            return (
                f"Dask workers on other machines cannot share the SQLite gradebook {db_url}. "
                "Set NBGRADER_DB_URL to a PostgreSQL database, such as postgresql+psycopg://grader@dbhost/course."
            )
        return None

    def _autograde(self, course_root, coursedir, submissions, logs, config, started, gradebook):
        """Autograde every gradable submission with the selected backend and return the rows in inbox order."""
        timeout = self._student_timeout(config)
        max_scores = report.read_max_scores(gradebook.db_url)
        results = {}
        jobs = []
        for submission in submissions:
            if submission.problem:
                self.log.warning(
                    "Not grading %s: %s (%s)", submission.student_id, submission.problem, submission.detail
                )
                results[submission.student_id] = problem_result(submission, max_scores)
                continue
            autograded = coursedir.format_path(coursedir.autograded_directory, submission.student_id, ASSIGNMENT_ID)
            jobs.append(
                AutogradeJob(
                    course_root=str(course_root),
                    gradebook=gradebook,
                    student_id=submission.student_id,
                    submitted_notebook=str(submission.notebook),
                    autograded_notebook=str(Path(autograded, NOTEBOOK_NAME)),
                    log_path=str(logs / f"{submission.student_id}-autograde.log"),
                    timeout=timeout,
                    force=self.force,
                    max_scores=max_scores,
                    batch_started=started,
                )
            )

        with (
            logging_redirect_tqdm(loggers=[self.log]),
            tqdm(total=len(submissions), desc="autograde", unit="student") as progress,
        ):
            progress.update(len(submissions) - len(jobs))
            for job, outcome in self._run_jobs(jobs):
                results[job.student_id] = self._student_row(job, outcome)
                progress.update()
        return [results[submission.student_id] for submission in submissions]

    def _run_jobs(self, jobs):
        """Yield ``(job, outcome)`` from the backend that the options select: Dask, or the local workers."""
        if not jobs:
            return
        if not (self.dask_scheduler or self.dask_local_workers):
            self.log.info("Autograding %d student(s) with %d local worker(s)", len(jobs), self.workers)
            yield from workers.grade_locally(jobs, self.workers)
            return

        with distributed.connect(self.dask_scheduler, self.dask_local_workers) as client:
            where = self.dask_scheduler or f"a LocalCluster on 127.0.0.1 ({client.scheduler.address})"
            self.log.info(
                "Autograding %d student(s) on %s with %d Dask worker(s)",
                len(jobs),
                where,
                distributed.worker_count(client),
            )
            yield from distributed.grade_on_dask(client, jobs)

    def _student_row(self, job, outcome):
        """Return the result row of one finished job, and log how its autograde went."""
        if isinstance(outcome, BaseException):
            detail = f"{type(outcome).__name__}: {outcome}"
            self.log.error("Grading %s failed: %s", job.student_id, detail)
            return failed_result(job.student_id, job.max_scores, detail)
        self.log.info("Autograded %s in %.0f s (%s)", job.student_id, outcome.seconds or 0, outcome.status)
        return outcome

    def _generate_feedback(self, course_root, coursedir, results, logs, gradebook):
        graded = [result for result in results if result.status in ("graded", "reused")]
        if not graded:
            return
        log_path = logs / "generate_feedback.log"
        self.log.info("Writing feedback HTML for %d student(s) (nbgrader generate_feedback)", len(graded))
        arguments = ["generate_feedback", ASSIGNMENT_ID, "--force"]
        if run_nbgrader(arguments, course_root, log_path, gradebook=gradebook) != 0:
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
