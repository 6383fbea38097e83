"""The gradebook URL of a grading run, and SQLite under concurrent nbgrader writers.

The last tests open real SQLite gradebooks with ``nbgrader.api.Gradebook``: one while another
connection holds the write lock, and one that several processes write at once, as parallel
``nbgrader autograde`` processes do.
"""

import sqlite3
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from nbgrader.api import Gradebook
from nbgrader.coursedir import CourseDirectory

from autograder.autograde import run_nbgrader
from autograder.gradebook import (
    DEFAULT_COURSE_ID,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    GradebookLocation,
    display_url,
    is_sqlite,
    with_busy_timeout,
)

POSTGRES_URL = "postgresql+psycopg://grader:secret@db.example.invalid:5432/course"
CELLS = ("c1", "c2", "c3", "c4")


def test_sqlite_url_gets_busy_timeout():
    url = with_busy_timeout("sqlite:////srv/course/gradebook.db")
    assert url == f"sqlite:////srv/course/gradebook.db?timeout={SQLITE_BUSY_TIMEOUT_SECONDS}"


def test_sqlite_url_keeps_own_timeout():
    assert with_busy_timeout("sqlite:////srv/course/gradebook.db?timeout=10") == "sqlite:////srv/course/gradebook.db?timeout=10"


def test_postgres_url_unchanged():
    assert with_busy_timeout(POSTGRES_URL) == POSTGRES_URL
    assert not is_sqlite(POSTGRES_URL)


def test_display_url_hides_password():
    masked = display_url(POSTGRES_URL)
    assert "secret" not in masked
    assert masked == "postgresql+psycopg://grader:***@db.example.invalid:5432/course"


def test_location_default_course_id(tmp_path):
    coursedir = CourseDirectory(root=str(tmp_path))
    location = GradebookLocation.of_course(coursedir)
    assert location.course_id == DEFAULT_COURSE_ID
    assert location.db_url == f"sqlite:///{tmp_path / 'gradebook.db'}?timeout={SQLITE_BUSY_TIMEOUT_SECONDS}"
    assert location.nbgrader_options() == [
        f"--CourseDirectory.db_url={location.db_url}",
        f"--CourseDirectory.course_id={DEFAULT_COURSE_ID}",
    ]


def test_location_configured_course_id(tmp_path):
    coursedir = CourseDirectory(root=str(tmp_path), course_id="cv101", db_url=POSTGRES_URL)
    location = GradebookLocation.of_course(coursedir)
    assert location.course_id == "cv101"
    assert location.db_url == POSTGRES_URL


def test_nbgrader_log_hides_password(tmp_path):
    log_path = tmp_path / "version.log"
    run_nbgrader(["--version"], tmp_path, log_path, timeout=120, gradebook=GradebookLocation(POSTGRES_URL))
    command_line = log_path.read_text(encoding="utf-8").splitlines()[0]
    assert "secret" not in command_line
    assert "--CourseDirectory.db_url=postgresql+psycopg://grader:***@" in command_line


def _make_gradebook(db_url):
    """Create a gradebook with one assignment whose notebook has the grade cells ``CELLS``."""
    with Gradebook(db_url) as gradebook:
        gradebook.add_assignment("a1")
        gradebook.add_notebook("nb", "a1")
        for name in CELLS:
            gradebook.add_grade_cell(name, "nb", "a1", max_score=1, cell_type="code")
            gradebook.add_solution_cell(name, "nb", "a1")
            gradebook.add_source_cell(name, "nb", "a1", cell_type="code", locked=True, source="pass")


def _hold_write_lock(path, seconds, locked):
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    locked.set()
    time.sleep(seconds)
    connection.execute("COMMIT")
    connection.close()


def _add_student_while_locked(path, db_url, hold_seconds):
    """Add a student with ``db_url`` while another connection holds the write lock for ``hold_seconds``."""
    locked = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, hold_seconds, locked))
    holder.start()
    locked.wait()
    try:
        with Gradebook(db_url) as gradebook:
            gradebook.update_or_create_student("late_writer")
    finally:
        holder.join()


def test_short_timeout_database_locked(tmp_path):
    path = tmp_path / "gradebook.db"
    _make_gradebook(f"sqlite:///{path}")
    with pytest.raises(Exception, match="database is locked"):
        _add_student_while_locked(path, f"sqlite:///{path}?timeout=0.2", hold_seconds=1.5)


def test_busy_timeout_waits_for_writer(tmp_path):
    path = tmp_path / "gradebook.db"
    _make_gradebook(f"sqlite:///{path}")
    _add_student_while_locked(path, with_busy_timeout(f"sqlite:///{path}"), hold_seconds=1.5)
    with Gradebook(f"sqlite:///{path}") as gradebook:
        assert gradebook.find_student("late_writer").id == "late_writer"


# The gradebook writes of one `nbgrader autograde` process, for `count` students: the student,
# the submission with its grade rows, then one commit per graded cell as SaveAutoGrades does.
WRITER = textwrap.dedent(
    """
    import sys
    from nbgrader.api import Gradebook

    db_url, worker, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for index in range(count):
        student_id = f"w{worker}-{index}"
        with Gradebook(db_url) as gradebook:
            gradebook.update_or_create_student(student_id)
        with Gradebook(db_url) as gradebook:
            gradebook.update_or_create_submission("a1", student_id)
        with Gradebook(db_url) as gradebook:
            for name in sys.argv[4:]:
                grade = gradebook.find_grade(name, "nb", "a1", student_id)
                grade.auto_score = 1
                gradebook.db.commit()
    """
)


def test_concurrent_writers_no_errors(tmp_path):
    path = tmp_path / "gradebook.db"
    db_url = with_busy_timeout(f"sqlite:///{path}")
    _make_gradebook(db_url)
    processes, students = 4, 4

    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, db_url, str(worker), str(students), *CELLS],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for worker in range(processes)
    ]
    outputs = [writer.communicate(timeout=600)[0] for writer in writers]

    for writer, output in zip(writers, outputs):
        assert "database is locked" not in output
        assert writer.returncode == 0, output
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    with Gradebook(db_url) as gradebook:
        assert len(gradebook.students) == processes * students
        assert gradebook.find_submission("a1", "w3-3").score == len(CELLS)
