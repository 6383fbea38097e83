"""What ``autograder.course`` finds in a student folder before nbgrader reads it."""

import os

from autograder.course import ASSIGNMENT_ID, NOTEBOOK_NAME, inspect_submission, special_files


def _student(tmp_path):
    folder = tmp_path / "student" / ASSIGNMENT_ID
    folder.mkdir(parents=True)
    (folder / NOTEBOOK_NAME).write_text("{}", encoding="utf-8")
    return folder


def test_special_files_none(tmp_path):
    _student(tmp_path)
    assert special_files(tmp_path / "student") == []


def test_special_files_symlink(tmp_path):
    folder = _student(tmp_path)
    (folder / "leak.ipynb").symlink_to("/etc/hostname")
    assert special_files(tmp_path / "student") == [f"{ASSIGNMENT_ID}/leak.ipynb"]


def test_special_files_fifo(tmp_path):
    folder = _student(tmp_path)
    os.mkfifo(folder / "pipe")
    assert special_files(tmp_path / "student") == [f"{ASSIGNMENT_ID}/pipe"]


def test_inspect_submission_symlinked_folder(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "student").mkdir()
    (tmp_path / "student" / ASSIGNMENT_ID).symlink_to(tmp_path / "elsewhere")

    submission = inspect_submission(tmp_path / "student")

    assert (submission.problem, submission.detail) == ("special_files", ASSIGNMENT_ID)


def test_special_files_symlinked_student_folder(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "student").symlink_to(tmp_path / "elsewhere")
    assert special_files(tmp_path / "student") == ["."]
