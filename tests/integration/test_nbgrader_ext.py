"""The nbgrader preprocessors in ``autograder.nbgrader_ext``, run on small notebooks and a real gradebook."""

import logging
import re
import time

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook
from nbgrader import utils
from nbgrader.api import Gradebook

from autograder.nbgrader_ext import (
    BoundedExecute,
    ClearHiddenTestsFromFeedback,
    OverwriteCellsWithHiddenTests,
    RestoreCellMetadata,
    hidden_test_lines,
    remove_hidden_tests,
)

STORED_TEST = (
    "from autograder import checks\n"
    "\n"
    "checks.check_vgg11_layers(VGG11)\n"
    "### BEGIN HIDDEN TESTS\n"
    "# canary: HIDDEN-TEST-CANARY-7f3a9c\n"
    "checks.check_vgg11_layers(VGG11, hidden=True)\n"
    "### END HIDDEN TESTS"
)
RELEASED_TEST = "from autograder import checks\n\nchecks.check_vgg11_layers(VGG11)"
GRADE_ID = "test_vgg11_layers"


def _test_cell(source):
    cell = new_code_cell(source)
    cell.metadata["nbgrader"] = {
        "grade": True,
        "solution": False,
        "locked": True,
        "grade_id": GRADE_ID,
        "points": 3,
        "schema_version": 3,
    }
    return cell


def test_remove_hidden_tests_gives_release_source():
    assert remove_hidden_tests(STORED_TEST) == RELEASED_TEST


def test_hidden_test_lines_lists_removed_lines():
    assert hidden_test_lines(STORED_TEST) == {
        "### BEGIN HIDDEN TESTS",
        "# canary: HIDDEN-TEST-CANARY-7f3a9c",
        "checks.check_vgg11_layers(VGG11, hidden=True)",
        "### END HIDDEN TESTS",
    }


@pytest.fixture
def gradebook_with_test_cell(tmp_path):
    """A gradebook that stores the test cell as ``generate_assignment`` does: with its hidden tests."""
    db_url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    stored = _test_cell(STORED_TEST)
    with Gradebook(db_url) as gradebook:
        gradebook.add_assignment("Assignment1")
        gradebook.add_notebook("Assignment1_blank", "Assignment1")
        gradebook.add_grade_cell(GRADE_ID, "Assignment1_blank", "Assignment1", max_score=3, cell_type="code")
        gradebook.add_source_cell(
            GRADE_ID,
            "Assignment1_blank",
            "Assignment1",
            cell_type="code",
            locked=True,
            source=STORED_TEST,
            checksum=utils.compute_checksum(stored),
        )
    return db_url


def _overwrite_cells(db_url, source, caplog):
    notebook = new_notebook(cells=[_test_cell(source)])
    resources = {"nbgrader": {"notebook": "Assignment1_blank", "assignment": "Assignment1", "db_url": db_url}}
    preprocessor = OverwriteCellsWithHiddenTests()
    preprocessor.log = logging.getLogger("test_overwrite_cells")
    with caplog.at_level(logging.WARNING, logger="test_overwrite_cells"):
        notebook, _ = preprocessor.preprocess(notebook, resources)
    return notebook.cells[0]


def test_overwrite_untouched_cell_silent(gradebook_with_test_cell, caplog):
    cell = _overwrite_cells(gradebook_with_test_cell, RELEASED_TEST, caplog)
    assert cell.source == STORED_TEST
    assert caplog.records == []


def test_overwrite_edited_cell_warns(gradebook_with_test_cell, caplog):
    cell = _overwrite_cells(gradebook_with_test_cell, "pass", caplog)
    assert cell.source == STORED_TEST
    assert any("checksum" in record.getMessage() and GRADE_ID in record.getMessage() for record in caplog.records)


def test_overwrite_edited_visible_line_warns(gradebook_with_test_cell, caplog):
    edited = RELEASED_TEST.replace("check_vgg11_layers(VGG11)", "check_vgg11_layers(object)")
    cell = _overwrite_cells(gradebook_with_test_cell, edited, caplog)
    assert cell.source == STORED_TEST
    assert any("checksum" in record.getMessage() for record in caplog.records)


def test_overwrite_duplicated_cell_is_plain_code(gradebook_with_test_cell):
    # DeduplicateIds empties the nbgrader metadata of the second cell with a grade_id.
    duplicate = _test_cell("pass")
    duplicate.metadata["nbgrader"] = {}
    notebook = new_notebook(cells=[_test_cell(RELEASED_TEST), duplicate])
    resources = {"nbgrader": {"notebook": "Assignment1_blank", "assignment": "Assignment1",
                              "db_url": gradebook_with_test_cell}}

    notebook, _ = OverwriteCellsWithHiddenTests().preprocess(notebook, resources)

    assert "nbgrader" not in notebook.cells[1].metadata


def _restore_metadata(db_url, cells):
    notebook = new_notebook(cells=cells)
    resources = {"nbgrader": {"notebook": "Assignment1_blank", "assignment": "Assignment1", "db_url": db_url}}
    notebook, _ = RestoreCellMetadata().preprocess(notebook, resources)
    return notebook.cells


def test_restore_metadata_grade_flag(gradebook_with_test_cell):
    cell = _test_cell(RELEASED_TEST)
    cell.metadata["nbgrader"].update(grade=False, points=100)

    restored, = _restore_metadata(gradebook_with_test_cell, [cell])

    assert (restored.metadata["nbgrader"]["grade"], restored.metadata["nbgrader"]["points"]) == (True, 3)


def test_restore_metadata_unknown_grade_id(gradebook_with_test_cell):
    pasted = _test_cell("print('hi')")
    pasted.metadata["nbgrader"]["grade_id"] = "test_from_assignment2"

    restored, = _restore_metadata(gradebook_with_test_cell, [pasted])

    assert "nbgrader" not in restored.metadata


def _traceback_with_hidden_lines():
    # Has the form of an IPython 9 traceback in an autograded notebook: a header, one frame that
    # quotes the cell with ANSI colour codes, and the exception line.
    frame = (
        "\x1b[36mCell\x1b[39m\x1b[36m \x1b[39m\x1b[32mIn[9]\x1b[39m\x1b[32m, line 6\x1b[39m\n"
        "\x1b[32m      3\x1b[39m checks.check_vgg11_layers(VGG11)\n"
        "\x1b[32m      4\x1b[39m \x1b[38;5;66;03m### BEGIN HIDDEN TESTS\x1b[39;00m\n"
        "\x1b[32m      5\x1b[39m \x1b[38;5;66;03m# canary: HIDDEN-TEST-CANARY-7f3a9c\x1b[39;00m\n"
        "\x1b[32m----> \x1b[39m\x1b[32m6\x1b[39m checks.check_vgg11_layers(VGG11, hidden=\x1b[38;5;28;01mTrue\x1b[39;00m)\n"
        "\x1b[32m      7\x1b[39m \x1b[38;5;66;03m### END HIDDEN TESTS\x1b[39;00m\n"
    )
    return [
        "\x1b[31m---------------------------------------------------------------------------\x1b[39m",
        "\x1b[31mCheckFailed\x1b[39m                               Traceback (most recent call last)",
        frame,
        "\x1b[31mCheckFailed\x1b[39m: test_vgg11_layers: 1 item(s) failed",
    ]


def test_feedback_clears_hidden_lines():
    cell = _test_cell(STORED_TEST)
    cell.outputs = [
        {"output_type": "error", "ename": "CheckFailed", "evalue": "failed", "traceback": _traceback_with_hidden_lines()}
    ]
    notebook, _ = ClearHiddenTestsFromFeedback().preprocess(new_notebook(cells=[cell]), {})
    cleared = notebook.cells[0]
    traceback = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(cleared.outputs[0]["traceback"]))

    assert cleared.source == RELEASED_TEST
    assert "HIDDEN-TEST-CANARY-7f3a9c" not in traceback
    assert "HIDDEN TESTS" not in traceback
    assert "hidden" not in traceback
    assert "check_vgg11_layers(VGG11)" in traceback
    assert "CheckFailed: test_vgg11_layers: 1 item(s) failed" in traceback
    assert "Cell In[9], line 6" in traceback


def test_feedback_keeps_cells_without_hidden_tests():
    cell = new_code_cell("print(1)")
    traceback = ["Cell In[1], line 1\n----> 1 print(1)\n", "NameError: x"]
    cell.outputs = [{"output_type": "error", "ename": "NameError", "evalue": "x", "traceback": list(traceback)}]
    notebook, _ = ClearHiddenTestsFromFeedback().preprocess(new_notebook(cells=[cell]), {})
    assert notebook.cells[0].source == "print(1)"
    assert notebook.cells[0].outputs[0]["traceback"] == traceback


@pytest.mark.integration
def test_bounded_execute_stops_slow_notebook(tmp_path):
    notebook = new_notebook(
        cells=[new_code_cell("import time\ntime.sleep(60)"), new_code_cell("value = 41 + 1\nvalue")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    executor = BoundedExecute(timeout=120, notebook_timeout=5)
    started = time.monotonic()
    notebook, _ = executor.preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    elapsed = time.monotonic() - started

    assert elapsed < 40
    assert notebook.cells[0].outputs[-1]["ename"] == "CellTimeoutError"
    assert notebook.cells[1].outputs[0]["data"]["text/plain"] == "42"


@pytest.mark.integration
def test_bounded_execute_no_notebook_limit(tmp_path):
    notebook = new_notebook(
        cells=[new_code_cell("import time\ntime.sleep(3)\n'done'")],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    executor = BoundedExecute(timeout=60, notebook_timeout=None)
    notebook, _ = executor.preprocess(notebook, {"metadata": {"path": str(tmp_path)}})
    assert notebook.cells[0].outputs[0]["data"]["text/plain"] == "'done'"


def _markdown_cell():
    cell = new_markdown_cell("## Tests")
    cell.metadata["nbgrader"] = {"grade": False, "solution": False, "locked": True, "grade_id": "md_tests", "schema_version": 3}
    return cell


@pytest.fixture
def gradebook_with_markdown_before_test(gradebook_with_test_cell):
    """The gradebook above with a locked markdown cell stored before the test cell, as in the notebook."""
    db_url = gradebook_with_test_cell
    with Gradebook(db_url) as gradebook:
        notebook = gradebook.find_notebook("Assignment1_blank", "Assignment1")
        test_cell = notebook.source_cells[0]
        gradebook.db.delete(test_cell)
        gradebook.db.commit()
        gradebook.add_source_cell(
            "md_tests",
            "Assignment1_blank",
            "Assignment1",
            cell_type="markdown",
            locked=True,
            source="## Tests",
            checksum=utils.compute_checksum(_markdown_cell()),
        )
        stored = _test_cell(STORED_TEST)
        gradebook.add_source_cell(
            GRADE_ID,
            "Assignment1_blank",
            "Assignment1",
            cell_type="code",
            locked=True,
            source=STORED_TEST,
            checksum=utils.compute_checksum(stored),
        )
    return db_url


def test_deleted_test_cell_put_back(gradebook_with_markdown_before_test, caplog):
    notebook = new_notebook(cells=[new_code_cell("x = 1"), _markdown_cell(), new_code_cell("y = 2")])
    resources = {
        "nbgrader": {"notebook": "Assignment1_blank", "assignment": "Assignment1", "db_url": gradebook_with_markdown_before_test}
    }
    preprocessor = OverwriteCellsWithHiddenTests(add_missing_cells=True)
    preprocessor.log = logging.getLogger("test_overwrite_cells")
    with caplog.at_level(logging.WARNING, logger="test_overwrite_cells"):
        notebook, _ = preprocessor.preprocess(notebook, resources)

    grade_ids = [cell.metadata.get("nbgrader", {}).get("grade_id") for cell in notebook.cells]
    assert grade_ids == [None, "md_tests", GRADE_ID, None]
    assert STORED_TEST in notebook.cells[2].source
    assert notebook.cells[2].metadata["nbgrader"]["points"] == 3
    assert any("Missing grade cell" in record.getMessage() for record in caplog.records)
