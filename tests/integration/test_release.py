"""The committed release notebook matches what ``nbgrader generate_assignment`` makes from source/."""

import shutil
import subprocess

import nbformat
import pytest

from autograder.course import ASSIGNMENT_ID, NOTEBOOK_NAME, notebook_differences

pytestmark = pytest.mark.integration

CANARY = "HIDDEN-TEST-CANARY-7f3a9c"


@pytest.fixture(scope="module")
def generated_release(tmp_path_factory, repo_root, nbgrader_env):
    """Run plain ``nbgrader generate_assignment`` in a copy of the course; return the course folder."""
    root = tmp_path_factory.mktemp("release-course")
    shutil.copy(repo_root / "nbgrader_config.py", root)
    shutil.copytree(repo_root / "source", root / "source", ignore=shutil.ignore_patterns("data", ".ipynb_checkpoints"))
    # A stand-in for the Fashion-MNIST files that running the notebook unpacks next to it.
    data = root / "source" / ASSIGNMENT_ID / "data" / "FashionMNIST" / "raw"
    data.mkdir(parents=True)
    (data / "train-images-idx3-ubyte").write_bytes(b"\0" * 16)
    run = subprocess.run(
        ["nbgrader", "generate_assignment", ASSIGNMENT_ID],
        cwd=root,
        env=nbgrader_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return root


def test_release_is_current(repo_root, generated_release):
    committed = repo_root / "release" / ASSIGNMENT_ID / NOTEBOOK_NAME
    generated = generated_release / "release" / ASSIGNMENT_ID / NOTEBOOK_NAME
    assert committed.is_file(), f"{committed} is missing"
    differences = notebook_differences(generated, committed)
    assert differences == [], f"regenerate with `nbgrader generate_assignment {ASSIGNMENT_ID} --force`: {differences}"


def test_config_root_is_its_folder(generated_release):
    assert (generated_release / "gradebook.db").is_file()
    assert (generated_release / "release" / ASSIGNMENT_ID / NOTEBOOK_NAME).is_file()


def test_release_leaves_out_data_folder(generated_release):
    assert not (generated_release / "release" / ASSIGNMENT_ID / "data").exists()


def test_release_has_no_hidden_tests(repo_root):
    text = (repo_root / "release" / ASSIGNMENT_ID / NOTEBOOK_NAME).read_text(encoding="utf-8")
    assert CANARY not in text
    assert "BEGIN HIDDEN TESTS" not in text


def test_release_has_no_solutions(repo_root):
    notebook = nbformat.read(str(repo_root / "release" / ASSIGNMENT_ID / NOTEBOOK_NAME), 4)
    for cell in notebook.cells:
        assert "BEGIN SOLUTION" not in cell.source, cell.metadata.get("nbgrader", {}).get("grade_id")
