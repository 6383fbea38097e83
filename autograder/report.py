"""Grading results per student, read from the nbgrader gradebook, and their text table and CSV.

``StudentResult`` is one row: the points of each test cell, the total and a status that states
what happened to the submission. ``read_scores`` reads the points with ``nbgrader.api.Gradebook``, so
the table shows what nbgrader stored and not what its log printed. ``format_table`` and ``write_csv``
only format rows, so an HTML report can be built from the same rows.
"""

import csv
from dataclasses import dataclass, field

from nbgrader.api import Gradebook, MissingEntry

from . import tables
from .course import ASSIGNMENT_ID, NOTEBOOK_ID, TEST_CELLS
from .nbgrader_ext import remove_hidden_tests

# Status key -> (Korean, English). The grading app prints both, Korean first.
STATUSES = {
    "graded": ("채점 완료", "graded"),
    "reused": ("이전 채점 결과 (--force로 다시 채점)", "previous result (use --force to regrade)"),
    "missing_assignment_folder": ("Assignment1 폴더 없음", "Assignment1 folder missing"),
    "notebook_missing": ("제출 파일 없음", "notebook missing"),
    "wrong_notebook_name": ("파일 이름이 다름", "wrong file name"),
    "invalid_notebook": ("노트북 파일을 읽을 수 없음", "not a valid notebook"),
    "special_files": ("심볼릭 링크나 특수 파일이 있어 채점하지 않음", "not graded: contains symlinks or special files"),
    "autograde_failed": ("자동 채점 실패 (로그 확인)", "autograde failed (see log)"),
    "timed_out": ("채점 시간 초과", "grading timed out"),
    "not_graded": ("채점 결과 없음", "no grades in the gradebook"),
}

# Note key -> (Korean, English), for things worth a look that do not stop grading.
NOTES = {
    "locked_cell_edited": ("수정된 잠긴 셀 (원본으로 채점함)", "locked cell edited (graded with the original)"),
    "locked_cell_deleted": ("삭제된 잠긴 셀 (테스트 셀만 복원됨)", "locked cell deleted (only test cells are put back)"),
    "feedback_missing": ("피드백 HTML 없음", "feedback HTML missing"),
    "regraded_unfinished": ("중단된 채점을 다시 함", "unfinished grading redone"),
    "regraded_resubmission": ("다시 제출한 노트북을 채점함 (이전 채점본 보관)", "resubmission graded (previous copy kept)"),
    "ungraded_cells": ("점수 없는 테스트 셀", "test cells without a score"),
}


def bilingual(catalogue, key):
    korean, english = catalogue[key]
    return f"{korean} / {english}"


@dataclass
class CellScore:
    """Points of one test cell. ``score`` is None when nbgrader stored no score for the cell."""

    score: float | None
    max_score: float


@dataclass
class StudentResult:
    """One row of the results table.

    ``status`` is a ``STATUSES`` key. ``notes`` contains ``NOTES`` keys or text that is already
    formatted, and ``detail`` explains the status, such as the file names found. ``seconds`` is the
    wall time of the student's autograde process, or None when nbgrader did not run.
    """

    student_id: str
    status: str
    scores: dict[str, CellScore] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    detail: str = ""
    log_path: str = ""
    feedback_path: str = ""
    seconds: float | None = None

    @property
    def total(self):
        return sum(cell.score or 0.0 for cell in self.scores.values())

    @property
    def max_total(self):
        return sum(cell.max_score for cell in self.scores.values())

    def status_text(self):
        return bilingual(STATUSES, self.status)

    def notes_text(self):
        """Return the status detail and the notes in one line, or "" when there are none."""
        parts = [self.detail] if self.detail else []
        parts += [bilingual(NOTES, note) if note in NOTES else note for note in self.notes]
        return "; ".join(parts)


def no_scores(max_scores):
    """Return ``{grade_id: CellScore}`` without earned points, for a student whose notebook was not graded."""
    return {grade_id: CellScore(None, max_score) for grade_id, max_score in max_scores.items()}


def read_max_scores(db_url, assignment_id=ASSIGNMENT_ID, notebook_id=NOTEBOOK_ID):
    """Return ``{grade_id: max points}`` of the notebook's grade cells: ``TEST_CELLS`` in order, then any others."""
    with Gradebook(db_url) as gradebook:
        notebook = gradebook.find_notebook(notebook_id, assignment_id)
        max_scores = {cell.name: float(cell.max_score) for cell in notebook.grade_cells}
    ordered = {name: max_scores[name] for name in TEST_CELLS if name in max_scores}
    ordered.update({name: points for name, points in sorted(max_scores.items()) if name not in ordered})
    return ordered


def read_scores(db_url, student_id, max_scores, assignment_id=ASSIGNMENT_ID, notebook_id=NOTEBOOK_ID):
    """Return ``{grade_id: CellScore}`` of one student, or None when the gradebook has no submission.

    A cell's ``score`` is None when nbgrader stored neither an automatic nor a manual score, which
    happens when autograding stopped before the cell ran.
    """
    scores = {}
    with Gradebook(db_url) as gradebook:
        try:
            gradebook.find_submission_notebook(notebook_id, assignment_id, student_id)
        except MissingEntry:
            return None
        for grade_id, max_score in max_scores.items():
            grade = gradebook.find_grade(grade_id, notebook_id, assignment_id, student_id)
            if grade.manual_score is None and grade.auto_score is None:
                scores[grade_id] = CellScore(None, max_score)
            else:
                scores[grade_id] = CellScore(float(grade.score), max_score)
    return scores


def find_changed_locked_cells(db_url, notebook, assignment_id=ASSIGNMENT_ID, notebook_id=NOTEBOOK_ID):
    """Return ``(edited, deleted)`` grade_ids of locked cells that differ from the release in a submission.

    ``notebook`` is the submitted ``nbformat`` notebook. A locked cell is unchanged when its source
    equals the source stored by ``generate_assignment`` with the hidden tests removed, which is
    what the release contains. nbgrader grades an edited cell with the stored source. Of the deleted
    cells, nbgrader puts back only grade cells, because ``OverwriteCells.add_missing_cells`` is set.
    """
    submitted = {}
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id:
            submitted[grade_id] = cell.source

    edited, deleted = [], []
    with Gradebook(db_url) as gradebook:
        for source_cell in gradebook.find_notebook(notebook_id, assignment_id).source_cells:
            if not source_cell.locked:
                continue
            if source_cell.name not in submitted:
                deleted.append(source_cell.name)
            elif submitted[source_cell.name] not in (source_cell.source, remove_hidden_tests(source_cell.source)):
                edited.append(source_cell.name)
    return edited, deleted


def short_cell_name(grade_id):
    return grade_id.removeprefix("test_")


def _points(value):
    return f"{value:g}"


def format_table(results, cell_names):
    """Return a plain-text table: one row per student, columns for each test cell, total and status.

    A cell shows ``earned/max``, or ``-/max`` when nbgrader stored no score for it. A status that
    ends with ``*`` has details, which ``format_notes`` lists.
    """
    header = ["student", *(short_cell_name(name) for name in cell_names), "total", "status"]
    rows = []
    for result in results:
        row = [result.student_id]
        for name in cell_names:
            cell = result.scores.get(name)
            if cell is None or cell.score is None:
                row.append("-" if cell is None else f"-/{_points(cell.max_score)}")
            else:
                row.append(f"{_points(cell.score)}/{_points(cell.max_score)}")
        row.append(f"{_points(result.total)}/{_points(result.max_total)}" if result.scores else "-")
        row.append(result.status_text() + (" *" if result.notes_text() else ""))
        rows.append(row)
    return tables.format_table(header, rows)


def format_notes(results):
    """Return one line per student with status details or notes, such as the file names found."""
    return "\n".join(f"* {result.student_id}: {result.notes_text()}" for result in results if result.notes_text())


def write_csv(results, cell_names, path):
    """Write one row per student with the points of each test cell, the total, status and notes."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(
            ["student_id", *cell_names, *(f"{name}_max" for name in cell_names), "total", "max_total", "status", "notes"]
        )
        for result in results:
            scores = [result.scores.get(name) for name in cell_names]
            writer.writerow(
                [
                    result.student_id,
                    *("" if cell is None or cell.score is None else _points(cell.score) for cell in scores),
                    *("" if cell is None else _points(cell.max_score) for cell in scores),
                    _points(result.total),
                    _points(result.max_total),
                    result.status,
                    result.notes_text(),
                ]
            )


def compare_with_expected(results, expected):
    """Return one message per test cell whose outcome differs from ``expected``.

    ``expected`` maps student id to ``{grade_id: "pass" | "fail"}``. A cell passes when it earned
    its maximum points.
    """
    mismatches = []
    for result in results:
        for grade_id, outcome in expected.get(result.student_id, {}).items():
            cell = result.scores.get(grade_id)
            if cell is None or cell.score is None:
                actual = "no score"
            else:
                actual = "pass" if cell.score >= cell.max_score else "fail"
            if actual != outcome:
                mismatches.append(f"{result.student_id} {grade_id}: expected {outcome}, got {actual}")
    return mismatches
