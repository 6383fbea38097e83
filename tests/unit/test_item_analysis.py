"""Tests for autograder.item_analysis on small autograded-like notebooks written in tmp_path."""

import logging

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook, new_output

from autograder import item_analysis
from autograder.item_analysis import FAILED, NOT_GRADED, PASSED, CellOutcome
from autograder.report import CellScore, StudentResult
from autograder.verdict import CheckFailed, Finding

LAYERS_FAILED = CheckFailed(
    "test_vgg11_layers",
    [
        Finding(
            "test_vgg11_layers",
            "layers.missing",
            {"where": "conv3_2 다음 BatchNorm2d", "expected": "BatchNorm2d(256)", "actual": "ReLU"},
        ),
        Finding("test_vgg11_layers", "layers.extra", {"where": "pool5", "actual": "Dropout(p=0.5)"}),
    ],
)

# Error outputs as nbclient stores them in an autograded notebook.
TWO_KEYS = new_output(
    "error", ename="CheckFailed", evalue=LAYERS_FAILED.render(), traceback=LAYERS_FAILED._render_traceback_()
)
NAME_ERROR = new_output(
    "error",
    ename="NameError",
    evalue="name 'VGG11' is not defined",
    traceback=[
        "\x1b[0;31m---------------------------------------------------------------------------\x1b[0m",
        "\x1b[0;31mNameError\x1b[0m                                 Traceback (most recent call last)",
        "Cell \x1b[0;32mIn[7], line 1\x1b[0m\n\x1b[0;32m----> 1\x1b[0m check_layers(VGG11)\n",
        "\x1b[0;31mNameError\x1b[0m: name 'VGG11' is not defined",
    ],
)
# nbgrader 0.9.6's Execute.error_on_timeout default.
TIMEOUT = new_output(
    "error",
    ename="CellTimeoutError",
    evalue="",
    traceback=["\x1b[0;31mCellTimeoutError\x1b[0m: No reply from kernel before timeout"],
)
BRACKETS_IN_MESSAGE = new_output(
    "error",
    ename="CheckFailed",
    evalue="test_vgg11_pool_shapes: 1개 항목 실패\n  - [pools.wrong_shape] pool5 뒤 feature map: 기대 [N, 512, 7, 7]",
    traceback=["CheckFailed: x [not.a_key] y\n  - [pools.wrong_shape] pool5 뒤 feature map"],
)

MAX_SCORES = {
    "test_vgg11_layers": 3.0,
    "test_vgg11_pool_shapes": 3.0,
    "test_vgg11_classifier": 2.0,
    "test_finetune_frozen": 2.0,
}


def _test_cell(grade_id, outputs=()):
    metadata = {"nbgrader": {"grade": True, "grade_id": grade_id, "locked": True, "points": 1, "solution": False}}
    return new_code_cell(f"check('{grade_id}')", metadata=metadata, outputs=list(outputs))


@pytest.fixture
def autograded(tmp_path):
    """An autograded notebook: layers fails with two keys, pool_shapes passes, classifier raises NameError."""
    notebook = new_notebook(
        cells=[
            new_code_cell("import torch", outputs=[new_output("error", ename="ImportError", evalue="", traceback=[])]),
            _test_cell("test_vgg11_layers", [new_output("stream", name="stdout", text="checking\n"), TWO_KEYS]),
            _test_cell("test_vgg11_pool_shapes", [new_output("stream", name="stdout", text="[ok] pool5\n")]),
            _test_cell("test_vgg11_classifier", [NAME_ERROR]),
            _test_cell("test_finetune_frozen"),
        ]
    )
    path = tmp_path / "autograded" / "kim" / "Assignment1" / "Assignment1_blank.ipynb"
    path.parent.mkdir(parents=True)
    nbformat.write(notebook, str(path))
    return path


def _result(points, status="graded"):
    scores = {grade_id: CellScore(points.get(grade_id), max_score) for grade_id, max_score in MAX_SCORES.items()}
    return StudentResult("kim", status, scores=scores)


# Points of the student whose notebook the `autograded` fixture writes. finetune has no score.
KIM_POINTS = {"test_vgg11_layers": 0.0, "test_vgg11_pool_shapes": 3.0, "test_vgg11_classifier": 0.0}


@pytest.mark.parametrize(
    "output, keys",
    [
        (TWO_KEYS, ("layers.missing", "layers.extra")),
        (NAME_ERROR, ("error.NameError",)),
        (TIMEOUT, ("error.CellTimeoutError",)),
        (BRACKETS_IN_MESSAGE, ("pools.wrong_shape",)),
        (new_output("error", ename="", evalue="", traceback=[]), ("error.unknown",)),
    ],
    ids=["two_keys", "name_error", "timeout", "brackets_in_message", "no_ename"],
)
def test_parse_reason_keys(output, keys):
    assert item_analysis.parse_reason_keys(output) == keys


def test_read_error_reasons(autograded):
    assert item_analysis.read_error_reasons(autograded) == {
        "test_vgg11_layers": ("layers.missing", "layers.extra"),
        "test_vgg11_classifier": ("error.NameError",),
    }


@pytest.mark.parametrize(
    "grade_id, expected",
    [
        ("test_vgg11_layers", CellOutcome(FAILED, ("layers.missing", "layers.extra"))),
        ("test_vgg11_pool_shapes", CellOutcome(PASSED)),
        ("test_vgg11_classifier", CellOutcome(FAILED, ("error.NameError",))),
        ("test_finetune_frozen", CellOutcome(NOT_GRADED)),
    ],
)
def test_read_outcomes(autograded, grade_id, expected):
    outcomes = item_analysis.read_outcomes(_result(KIM_POINTS), list(MAX_SCORES), autograded)
    assert outcomes[grade_id] == expected


def test_all_passed_skips_notebook(tmp_path, caplog):
    result = _result(dict(MAX_SCORES))
    with caplog.at_level(logging.WARNING):
        outcomes = item_analysis.read_outcomes(result, list(MAX_SCORES), tmp_path / "missing.ipynb")
    assert set(outcomes.values()) == {CellOutcome(PASSED)}
    assert not caplog.records


def test_missing_notebook_reason(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        outcomes = item_analysis.read_outcomes(_result(KIM_POINTS), list(MAX_SCORES), tmp_path / "missing.ipynb")
    assert outcomes["test_vgg11_layers"] == CellOutcome(FAILED, (item_analysis.NOTEBOOK_UNREADABLE,))
    assert "kim" in caplog.text


def test_failed_without_error_output(autograded):
    points = {**KIM_POINTS, "test_finetune_frozen": 0.0}
    outcomes = item_analysis.read_outcomes(_result(points), list(MAX_SCORES), autograded)
    assert outcomes["test_finetune_frozen"] == CellOutcome(FAILED, (item_analysis.NO_ERROR_OUTPUT,))


def test_partial_points_fail(autograded):
    points = {**KIM_POINTS, "test_vgg11_pool_shapes": 1.5}
    outcomes = item_analysis.read_outcomes(_result(points), list(MAX_SCORES), autograded)
    assert outcomes["test_vgg11_pool_shapes"] == CellOutcome(FAILED, (item_analysis.NO_ERROR_OUTPUT,))


OUTCOMES = {
    "kim": {
        "test_vgg11_layers": CellOutcome(FAILED, ("layers.missing", "layers.extra")),
        "test_vgg11_pool_shapes": CellOutcome(PASSED),
        "test_vgg11_classifier": CellOutcome(FAILED, ("error.NameError",)),
        "test_finetune_frozen": CellOutcome(NOT_GRADED),
    },
    "lee": {
        "test_vgg11_layers": CellOutcome(FAILED, ("layers.missing",)),
        "test_vgg11_pool_shapes": CellOutcome(PASSED),
        "test_vgg11_classifier": CellOutcome(PASSED),
        "test_finetune_frozen": CellOutcome(NOT_GRADED),
    },
    "park": {
        "test_vgg11_layers": CellOutcome(PASSED),
        "test_vgg11_pool_shapes": CellOutcome(FAILED, ("pools.no_pool",)),
        "test_vgg11_classifier": CellOutcome(PASSED),
        "test_finetune_frozen": CellOutcome(NOT_GRADED),
    },
}

# grade_id -> (passed, failed, not_graded, pass_rate, most common reasons)
ITEM_TABLE = {
    "test_vgg11_layers": (1, 2, 0, 1 / 3, [("layers.missing", 2), ("layers.extra", 1)]),
    "test_vgg11_pool_shapes": (2, 1, 0, 2 / 3, [("pools.no_pool", 1)]),
    "test_vgg11_classifier": (2, 1, 0, 2 / 3, [("error.NameError", 1)]),
    "test_finetune_frozen": (0, 0, 3, None, []),
}


@pytest.fixture(scope="module")
def item_stats():
    return {item.grade_id: item for item in item_analysis.analyse_items(OUTCOMES, MAX_SCORES)}


def test_items_in_cell_order(item_stats):
    assert list(item_stats) == list(MAX_SCORES)


@pytest.mark.parametrize("grade_id", list(ITEM_TABLE))
def test_item_counts(item_stats, grade_id):
    passed, failed, not_graded, _, _ = ITEM_TABLE[grade_id]
    item = item_stats[grade_id]
    assert item.passed == passed
    assert item.failed == failed
    assert item.not_graded == not_graded


@pytest.mark.parametrize("grade_id", list(ITEM_TABLE))
def test_item_pass_rate(item_stats, grade_id):
    assert item_stats[grade_id].pass_rate == pytest.approx(ITEM_TABLE[grade_id][3])


@pytest.mark.parametrize("grade_id", list(ITEM_TABLE))
def test_item_reasons(item_stats, grade_id):
    assert item_stats[grade_id].most_common_reasons() == ITEM_TABLE[grade_id][4]
