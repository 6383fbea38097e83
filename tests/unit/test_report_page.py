"""Tests for autograder.report_page: the batch report written from fabricated results into tmp_path."""

import csv

import pytest
from matplotlib.image import imread

from autograder import messages, report_page
from autograder.item_analysis import FAILED, NOT_GRADED, PASSED, CellOutcome, analyse_items
from autograder.report import CellScore, StudentResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

MAX_SCORES = {
    "test_vgg11_layers": 3.0,
    "test_vgg11_pool_shapes": 3.0,
    "test_vgg11_classifier": 2.0,
    "test_finetune_frozen": 2.0,
}

# Student id -> (points per test cell in MAX_SCORES order, outcome per test cell, status).
STUDENTS = {
    "kim<script>": (
        (0.0, 3.0, 0.0, 2.0),
        (
            CellOutcome(FAILED, ("layers.missing", "layers.extra")),
            CellOutcome(PASSED),
            CellOutcome(FAILED, ("error.NameError",)),
            CellOutcome(PASSED),
        ),
        "graded",
    ),
    "lee&park": (
        (3.0, 3.0, 2.0, 0.0),
        (CellOutcome(PASSED), CellOutcome(PASSED), CellOutcome(PASSED), CellOutcome(FAILED, ("finetune.head",))),
        "graded",
    ),
    "choi": ((None, None, None, None), (CellOutcome(NOT_GRADED),) * 4, "notebook_missing"),
}

REPORT_FILES = [
    report_page.HTML_NAME,
    report_page.HISTOGRAM_NAME,
    report_page.FAILURE_RATES_NAME,
    report_page.ITEM_CSV_NAME,
    report_page.OUTCOMES_CSV_NAME,
]
PNG_FILES = [report_page.HISTOGRAM_NAME, report_page.FAILURE_RATES_NAME]


def _fabricate():
    results, outcomes = [], {}
    for student_id, (points, cell_outcomes, status) in STUDENTS.items():
        scores = {name: CellScore(score, MAX_SCORES[name]) for name, score in zip(MAX_SCORES, points)}
        results.append(StudentResult(student_id, status, scores=scores))
        outcomes[student_id] = dict(zip(MAX_SCORES, cell_outcomes))
    return results, outcomes, analyse_items(outcomes, MAX_SCORES)


def _write(directory):
    results, outcomes, item_stats = _fabricate()
    return report_page.write_report(results, outcomes, item_stats, directory)


@pytest.fixture
def korean(monkeypatch):
    monkeypatch.setattr(messages, "_language", None)
    monkeypatch.delenv("AUTOGRADER_LANG", raising=False)


@pytest.fixture
def page(tmp_path, korean):
    path = _write(tmp_path / "reports")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", REPORT_FILES)
def test_report_file_written(tmp_path, korean, name):
    _write(tmp_path / "reports")
    assert (tmp_path / "reports" / name).is_file()


@pytest.mark.parametrize("name", PNG_FILES)
def test_chart_is_png(tmp_path, korean, name):
    _write(tmp_path / "reports")
    path = tmp_path / "reports" / name
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert imread(path).ndim == 3


@pytest.mark.parametrize("name", PNG_FILES)
def test_page_links_chart(page, name):
    assert f'<img src="{name}"' in page


@pytest.mark.parametrize("escaped", ["kim&lt;script&gt;", "lee&amp;park"])
def test_page_escapes_student_id(page, escaped):
    assert escaped in page


def test_page_has_no_raw_id(page):
    assert "<script>" not in page


@pytest.mark.parametrize("key", ["layers.missing", "layers.extra", "error.NameError", "finetune.head"])
def test_page_lists_reason(page, key):
    assert f"<code>{key}</code>" in page


def test_page_korean_default(page):
    assert '<html lang="ko">' in page
    assert "배치 채점 보고서" in page


def test_page_english(tmp_path, monkeypatch):
    monkeypatch.setattr(messages, "_language", None)
    monkeypatch.setenv("AUTOGRADER_LANG", "en")
    page = _write(tmp_path / "reports").read_text(encoding="utf-8")
    assert '<html lang="en">' in page
    assert "Batch grading report" in page


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


# grade_id -> (passed, failed, not_graded, pass_rate, failure_reasons) in item_analysis.csv
ITEM_ROWS = {
    "test_vgg11_layers": ("1", "1", "1", "0.500", "layers.missing=1; layers.extra=1"),
    "test_vgg11_pool_shapes": ("2", "0", "1", "1.000", ""),
    "test_vgg11_classifier": ("1", "1", "1", "0.500", "error.NameError=1"),
    "test_finetune_frozen": ("1", "1", "1", "0.500", "finetune.head=1"),
}


@pytest.mark.parametrize("grade_id", list(ITEM_ROWS))
def test_item_csv_row(tmp_path, korean, grade_id):
    _write(tmp_path / "reports")
    rows = {row["grade_id"]: row for row in _read_csv(tmp_path / "reports" / report_page.ITEM_CSV_NAME)}
    row = rows[grade_id]
    columns = ("passed", "failed", "not_graded", "pass_rate", "failure_reasons")
    assert tuple(row[column] for column in columns) == ITEM_ROWS[grade_id]


def test_outcomes_csv_rows(tmp_path, korean):
    _write(tmp_path / "reports")
    rows = _read_csv(tmp_path / "reports" / report_page.OUTCOMES_CSV_NAME)
    assert len(rows) == len(STUDENTS) * len(MAX_SCORES)
    assert rows[0] == {
        "student_id": "kim<script>",
        "grade_id": "test_vgg11_layers",
        "score": "0",
        "max_score": "3",
        "outcome": "fail",
        "reasons": "layers.missing; layers.extra",
    }


def test_histogram_without_scores(tmp_path):
    path = tmp_path / "empty.png"
    report_page.plot_score_histogram([], 10.0, path)
    assert path.read_bytes()[:8] == PNG_SIGNATURE


@pytest.mark.parametrize(
    "key, expected",
    [
        ("error.NameError", "The cell raised NameError."),
        ("layers.extra", messages.CATALOGUE["layers.extra"][1]),
        ("notebook_unreadable", report_page.LABELS["notebook_unreadable"][1]),
        ("something.new", ""),
    ],
)
def test_describe_reason(monkeypatch, key, expected):
    monkeypatch.setattr(messages, "_language", "en")
    assert report_page.describe_reason(key) == expected
