"""Course selection, worker options, locking and the release check of ``python -m autograder.grade``.

``GradeApp.grade_course`` and ``run_nbgrader`` are replaced here, so these tests run no nbgrader
step. The slow tests in test_grading.py run the whole app.
"""

import fcntl
import logging
import os
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

from autograder import grade
from autograder.examples import EXPECTED
from autograder.grade import GRADING_RELEASE_DIRECTORY, GradeApp, load_course_directory


@pytest.fixture(autouse=True)
def restore_paths(monkeypatch):
    """Undo the PYTHONPATH and sys.path entries that loading nbgrader_config.py adds."""
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture
def course_copy(tmp_path, repo_root):
    """A copy of the course files that the app reads: config, source and example submissions."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(repo_root / "nbgrader_config.py", root)
    shutil.copytree(repo_root / "source", root / "source", ignore=shutil.ignore_patterns("data", ".ipynb_checkpoints"))
    shutil.copytree(repo_root / "examples" / "submissions", root / "examples" / "submissions")
    (root / "assignments").mkdir()
    (root / "assignments" / ".gitkeep").write_text("", encoding="utf-8")
    return root


def _start(root, monkeypatch, *arguments):
    """Run the app on ``root`` and return the (course_root, expected) that it passed to grade_course."""
    calls = []
    monkeypatch.setattr(GradeApp, "grade_course", lambda self, course, repo, expected: calls.append((course, expected)) or 0)
    app = GradeApp()
    app.initialize([f"--root={root}", *arguments])
    with pytest.raises(SystemExit) as exit_info:
        app.start()
    assert exit_info.value.code == 0
    assert len(calls) == 1
    return calls[0]


def test_empty_inbox_grades_examples(course_copy, monkeypatch, capsys):
    course, expected = _start(course_copy, monkeypatch)
    assert course == course_copy / "build" / "examples-course"
    assert expected == EXPECTED


def test_empty_inbox_message_korean_first(course_copy, monkeypatch, capsys):
    _start(course_copy, monkeypatch)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("assignments/에 학생 제출물이 없습니다.")
    assert lines[1].startswith("No student submissions in assignments/.")


def test_examples_course_contents(course_copy, monkeypatch):
    course, _ = _start(course_copy, monkeypatch)
    for student_id in EXPECTED:
        assert (course / "assignments" / student_id / "Assignment1" / "Assignment1_blank.ipynb").is_file()
    assert (course / "source" / "Assignment1" / "Assignment1_blank.ipynb").is_file()


def test_examples_course_config(course_copy, monkeypatch):
    course, _ = _start(course_copy, monkeypatch)
    coursedir, config = load_course_directory(course)
    assert coursedir.root == str(course)
    assert coursedir.db_url == f"sqlite:///{course / 'gradebook.db'}"
    assert coursedir.submitted_directory == "assignments"
    assert config.CsvExportPlugin.to == str(course / "grades.csv")


def test_inbox_with_student_grades_inbox(course_copy, monkeypatch, capsys):
    (course_copy / "assignments" / "student01").mkdir()
    course, expected = _start(course_copy, monkeypatch)
    assert course == course_copy
    assert expected == {}
    assert "학생 제출물이 없습니다" not in capsys.readouterr().out


def test_examples_flag_overrides_inbox(course_copy, monkeypatch):
    (course_copy / "assignments" / "student01").mkdir()
    course, expected = _start(course_copy, monkeypatch, "--examples")
    assert course == course_copy / "build" / "examples-course"
    assert expected == EXPECTED


def test_student_timeout_default(course_copy):
    app = GradeApp()
    app.initialize([f"--root={course_copy}"])
    _, config = load_course_directory(course_copy)
    assert app._student_timeout(config) == config.BoundedExecute.notebook_timeout + 600


def test_student_timeout_option(course_copy):
    app = GradeApp()
    app.initialize([f"--root={course_copy}", "--student-timeout=90"])
    _, config = load_course_directory(course_copy)
    assert app._student_timeout(config) == 90


def test_second_run_stops_while_locked(course_copy, monkeypatch):
    monkeypatch.setattr(GradeApp, "grade_course", lambda self, course, repo, expected: pytest.fail("graded while locked"))
    lock_path = course_copy / "build" / "grading.lock"
    lock_path.parent.mkdir(parents=True)
    with open(lock_path, "w", encoding="utf-8") as lock_file:
        lock_file.write("process 12345\n")
        lock_file.flush()
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        app = GradeApp()
        app.initialize([f"--root={course_copy}"])
        with pytest.raises(SystemExit) as exit_info:
            app.start()
    assert exit_info.value.code == 1


def _fake_generate_assignment(source_notebook):
    """Return a stand-in for run_nbgrader that writes ``source_notebook`` as the regenerated release."""

    def run(arguments, course_root, log_path, timeout=None, gradebook=None):
        regenerated = Path(course_root, GRADING_RELEASE_DIRECTORY, "Assignment1", "Assignment1_blank.ipynb")
        regenerated.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source_notebook, regenerated)
        return 0

    return run


def _check_release(course_copy, monkeypatch, caplog, regenerated):
    monkeypatch.setattr(grade, "run_nbgrader", _fake_generate_assignment(regenerated))
    app = GradeApp()
    app.log = logging.getLogger("test_grade_app")
    with caplog.at_level(logging.WARNING, logger="test_grade_app"):
        assert app._generate_assignment(course_copy, course_copy, course_copy / "logs")
    return [record.getMessage() for record in caplog.records]


def test_stale_release_warns(course_copy, repo_root, monkeypatch, caplog, tmp_path):
    release = repo_root / "release" / "Assignment1" / "Assignment1_blank.ipynb"
    (course_copy / "release" / "Assignment1").mkdir(parents=True)
    shutil.copy(release, course_copy / "release" / "Assignment1")
    edited = nbformat.read(str(release), 4)
    edited.cells[0].source += "\nchanged"
    nbformat.write(edited, str(tmp_path / "edited.ipynb"))

    messages = _check_release(course_copy, monkeypatch, caplog, tmp_path / "edited.ipynb")
    assert len(messages) == 1
    assert "cell 0" in messages[0]
    assert "nbgrader generate_assignment Assignment1 --force" in messages[0]


def test_current_release_no_warning(course_copy, repo_root, monkeypatch, caplog):
    release = repo_root / "release" / "Assignment1" / "Assignment1_blank.ipynb"
    (course_copy / "release" / "Assignment1").mkdir(parents=True)
    shutil.copy(release, course_copy / "release" / "Assignment1")

    assert _check_release(course_copy, monkeypatch, caplog, release) == []


def test_workers_option(course_copy):
    app = GradeApp()
    app.initialize([f"--root={course_copy}", "--workers=3"])
    assert app.workers == 3
    assert app._check_backend("sqlite:////course/gradebook.db") is None


def test_zero_workers_rejected(course_copy, capsys):
    app = GradeApp()
    with pytest.raises(SystemExit) as exit_info:
        app.initialize([f"--root={course_copy}", "--workers=0"])
    assert exit_info.value.code == 1
    assert "GradeApp.workers must be at least 1, got 0" in capsys.readouterr().err


def test_workers_from_course_config(course_copy):
    with open(course_copy / "nbgrader_config.py", "a", encoding="utf-8") as config:
        config.write("\nc.GradeApp.workers = 2\n")
    app = GradeApp()
    app.initialize([f"--root={course_copy}"])
    assert app.workers == 2


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["--scheduler=tcp://127.0.0.1:8786", "--dask-local=2"], "either --scheduler or --dask-local"),
        (["--dask-local=2", "--workers=2"], "--workers sets the local worker pool"),
        (["--scheduler=tcp://127.0.0.1:8786"], "cannot share the SQLite gradebook"),
    ],
)
def test_invalid_backend_options(course_copy, arguments, message):
    app = GradeApp()
    app.initialize([f"--root={course_copy}", *arguments])
    assert message in app._check_backend("sqlite:////course/gradebook.db")


def test_scheduler_with_postgres_accepted(course_copy):
    app = GradeApp()
    app.initialize([f"--root={course_copy}", "--scheduler=tcp://127.0.0.1:8786"])
    assert app._check_backend("postgresql+psycopg://grader@127.0.0.1:5432/course") is None


def test_invalid_options_stop_before_nbgrader(course_copy, monkeypatch, caplog):
    monkeypatch.setattr(grade, "run_nbgrader", lambda *args, **kwargs: pytest.fail("nbgrader ran"))
    app = GradeApp()
    app.initialize([f"--root={course_copy}", "--scheduler=tcp://127.0.0.1:8786"])
    app.log = logging.getLogger("test_grade_app")
    with caplog.at_level(logging.ERROR, logger="test_grade_app"):
        assert app.grade_course(course_copy, course_copy, {}) == 1
    assert "NBGRADER_DB_URL" in caplog.text
