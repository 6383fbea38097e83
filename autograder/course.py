"""Locations in the nbgrader course: the root, its config, and the submissions in the inbox.

The course root is the repository root, the folder that contains ``nbgrader_config.py``.
Submissions are read from ``assignments/<student_id>/Assignment1/Assignment1_blank.ipynb``
(``CourseDirectory.submitted_directory`` in that config).
"""

import os
import stat
from dataclasses import dataclass
from pathlib import Path

import nbformat

ASSIGNMENT_ID = "Assignment1"
NOTEBOOK_ID = "Assignment1_blank"
NOTEBOOK_NAME = NOTEBOOK_ID + ".ipynb"
CONFIG_NAME = "nbgrader_config.py"

# nbgrader grade_ids of the notebook's answer cells and test cells, in notebook order.
ANSWER_CELLS = ("vgg11_model", "finetune_model")
TEST_CELLS = ("test_vgg11_layers", "test_vgg11_pool_shapes", "test_vgg11_classifier", "test_finetune_frozen")

# Exceptions that nbformat 5 raises for a file that is not a valid notebook. ValueError covers NotJSONError
# and UnicodeDecodeError, and JSON of the wrong shape (such as a list) fails with AttributeError or KeyError.
_READ_ERRORS = (OSError, ValueError, AttributeError, KeyError, TypeError, nbformat.ValidationError)

# Entries of the inbox that are not student folders.
_IGNORED_NAMES = {".gitkeep", ".ipynb_checkpoints", "__pycache__", ".DS_Store"}


def find_course_root(start=None):
    """Return the course root: the nearest folder at or above ``start`` that contains nbgrader_config.py.

    ``start`` defaults to this package's folder, so the repository is found from any working
    directory. Raises ``FileNotFoundError`` when no folder up to the file system root has the config.
    """
    start = Path(start or Path(__file__).resolve().parent).resolve()
    for folder in [start, *start.parents]:
        if (folder / CONFIG_NAME).is_file():
            return folder
    raise FileNotFoundError(f"{CONFIG_NAME} not found in {start} or any folder above it")


@dataclass
class Submission:
    """One student folder of the inbox and what it contains.

    ``problem`` is None for a notebook that nbgrader can grade, else a ``report.STATUSES`` key:
    ``special_files``, ``missing_assignment_folder``, ``notebook_missing``, ``wrong_notebook_name`` or
    ``invalid_notebook``.
    ``detail`` contains the file names found or the read error.
    """

    student_id: str
    folder: Path
    notebook: Path
    problem: str | None = None
    detail: str = ""


def list_submissions(submitted_dir, assignment_id=ASSIGNMENT_ID, notebook_name=NOTEBOOK_NAME):
    """Return one ``Submission`` per student folder in ``submitted_dir``, sorted by student id.

    Each notebook is read with nbformat and validated, which is what nbgrader does first, so
    ``problem`` names the reason why nbgrader would skip or reject it. Files directly in
    ``submitted_dir`` are not student folders and are ignored.
    """
    submitted_dir = Path(submitted_dir)
    if not submitted_dir.is_dir():
        return []

    submissions = []
    for folder in sorted(submitted_dir.iterdir()):
        if not folder.is_dir() or folder.name in _IGNORED_NAMES or folder.name.startswith("."):
            continue
        submissions.append(inspect_submission(folder, assignment_id, notebook_name))
    return submissions


def inspect_submission(student_folder, assignment_id=ASSIGNMENT_ID, notebook_name=NOTEBOOK_NAME):
    """Return the ``Submission`` of one student folder, with ``problem`` set when it cannot be graded."""
    student_folder = Path(student_folder)
    assignment_folder = student_folder / assignment_id
    notebook = assignment_folder / notebook_name
    submission = Submission(student_id=student_folder.name, folder=student_folder, notebook=notebook)

    special = special_files(student_folder)
    if special:
        submission.problem = "special_files"
        submission.detail = ", ".join(special[:5]) + (f" (+{len(special) - 5})" if len(special) > 5 else "")
        return submission

    if not assignment_folder.is_dir():
        submission.problem = "missing_assignment_folder"
        submission.detail = _list_names(student_folder)
        return submission

    if not notebook.is_file():
        others = sorted(p.name for p in assignment_folder.glob("*.ipynb"))
        submission.problem = "wrong_notebook_name" if others else "notebook_missing"
        submission.detail = ", ".join(others) if others else _list_names(assignment_folder)
        return submission

    try:
        nbformat.validate(nbformat.read(str(notebook), as_version=4))
    except _READ_ERRORS as error:
        submission.problem = "invalid_notebook"
        submission.detail = _first_line(error)
    return submission


def special_files(folder):
    """Return the paths under ``folder``, relative to it, that are symlinks or neither files nor folders.

    nbgrader copies a submission's files as the grader, following symlinks, so a link to the source
    notebook or the gradebook would put hidden tests into the autograded and feedback folders. A FIFO
    would block the copy.
    """
    if Path(folder).is_symlink():
        return ["."]
    found = []
    for directory, folders, files in os.walk(folder, followlinks=False):
        for name in folders + files:
            path = Path(directory, name)
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode) or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                found.append(str(path.relative_to(folder)))
    return sorted(found)


def _list_names(folder):
    names = sorted(os.listdir(folder))
    return ", ".join(names) if names else "-"


def _first_line(error):
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def notebook_differences(expected_path, actual_path):
    """Return a description of each cell that differs between two notebooks; empty when they match.

    Cells are compared by position on cell type, id, source and metadata. Outputs and execution
    counts are not compared, so the check holds for a release notebook regenerated by
    ``nbgrader generate_assignment`` and for one that was opened and saved again.
    """
    expected = nbformat.read(str(expected_path), as_version=4)
    actual = nbformat.read(str(actual_path), as_version=4)
    differences = []
    if len(expected.cells) != len(actual.cells):
        differences.append(f"cell count: expected {len(expected.cells)}, got {len(actual.cells)}")

    for index, (want, got) in enumerate(zip(expected.cells, actual.cells)):
        label = want.metadata.get("nbgrader", {}).get("grade_id") or f"#{index}"
        for field in ("cell_type", "id", "source", "metadata"):
            if want.get(field) != got.get(field):
                differences.append(f"cell {index} ({label}): {field} differs")
    return differences
