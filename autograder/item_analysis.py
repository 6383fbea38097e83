"""Outcome and failure reasons of each test cell per student, and pass rates per test cell.

A test cell passes when it earned its maximum points, fails when it earned less, and is
``not_graded`` when nbgrader stored no score for it. The reasons of a failing cell are read from
its error output in the autograded notebook: the ``[key]`` tokens that ``CheckFailed.render``
prints, one per finding. A failing cell whose error has no such token, such as a NameError or a
cell timeout, gets ``error.<exception name>`` as its reason.
"""

import logging
import re
from collections import Counter
from dataclasses import dataclass, field

import nbformat

log = logging.getLogger(__name__)

PASSED = "pass"
FAILED = "fail"
NOT_GRADED = "not_graded"

# Reasons of a failing cell that has no error output, or whose autograded notebook cannot be read.
NO_ERROR_OUTPUT = "no_error_output"
NOTEBOOK_UNREADABLE = "notebook_unreadable"

# A finding line of CheckFailed.render: "  - [layers.missing] conv3_2 다음 BatchNorm2d: ...".
# The pattern is anchored to the "- [" at the line start because messages may contain brackets.
_REASON_KEY = re.compile(r"^\s*-\s*\[(?P<key>[A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)*)\]", re.MULTILINE)

# IPython colours tracebacks with ANSI SGR sequences.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# Exceptions that nbformat 5 raises for a missing file or one that is not a valid notebook.
_READ_ERRORS = (OSError, ValueError, AttributeError, KeyError, TypeError, nbformat.ValidationError)


@dataclass(frozen=True)
class CellOutcome:
    """Outcome of one test cell for one student: ``PASSED``, ``FAILED`` or ``NOT_GRADED``, and the reason keys."""

    outcome: str
    reasons: tuple[str, ...] = ()


@dataclass
class ItemStats:
    """Counts of one test cell over all students.

    ``reasons`` counts students, not findings, so a key that one cell reports twice counts once.
    """

    grade_id: str
    max_score: float
    passed: int = 0
    failed: int = 0
    not_graded: int = 0
    reasons: Counter = field(default_factory=Counter)

    @property
    def graded(self):
        return self.passed + self.failed

    @property
    def pass_rate(self):
        """Passed over graded students, from 0 to 1, or None when no student has a score for the cell."""
        return self.passed / self.graded if self.graded else None

    @property
    def failure_rate(self):
        return 1.0 - self.pass_rate if self.graded else None

    def most_common_reasons(self, count=None):
        return self.reasons.most_common(count)


def parse_reason_keys(error_output):
    """Return the reason keys of one nbformat error output, in order and without repeats.

    The keys come from the ``[key]`` finding lines in ``evalue`` and ``traceback``. Without any,
    the reason is ``error.<ename>``, for example ``error.NameError`` or ``error.CellTimeoutError``.
    """
    text = "\n".join([error_output.get("evalue", ""), *error_output.get("traceback", [])])
    keys = [match.group("key") for match in _REASON_KEY.finditer(_ANSI_ESCAPE.sub("", text))]
    if not keys:
        keys = [f"error.{error_output.get('ename') or 'unknown'}"]
    return tuple(dict.fromkeys(keys))


def read_error_reasons(notebook_path):
    """Return ``{grade_id: reason keys}`` for each nbgrader cell with an error output in the notebook.

    Raises the ``nbformat`` or ``OSError`` exception when the notebook cannot be read.
    """
    notebook = nbformat.read(str(notebook_path), as_version=4)
    reasons = {}
    for cell in notebook.cells:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if not grade_id or cell.cell_type != "code":
            continue
        keys = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                keys.extend(parse_reason_keys(output))
        if keys:
            reasons[grade_id] = tuple(dict.fromkeys(keys))
    return reasons


def read_outcomes(result, cell_names, notebook_path):
    """Return ``{grade_id: CellOutcome}`` of one ``report.StudentResult`` for the test cells ``cell_names``.

    The notebook at ``notebook_path`` is read only when a cell failed. When it cannot be read, each
    failing cell gets the reason ``NOTEBOOK_UNREADABLE`` and a warning is logged.
    """
    outcomes = {}
    for grade_id in cell_names:
        cell = result.scores.get(grade_id)
        if cell is None or cell.score is None:
            outcomes[grade_id] = CellOutcome(NOT_GRADED)
        elif cell.score >= cell.max_score:
            outcomes[grade_id] = CellOutcome(PASSED)
        else:
            outcomes[grade_id] = CellOutcome(FAILED)

    if not any(outcome.outcome == FAILED for outcome in outcomes.values()):
        return outcomes

    try:
        error_reasons = read_error_reasons(notebook_path)
    except _READ_ERRORS as error:
        log.warning(
            "Failed to read the autograded notebook of %s (%s): %s. Its failing test cells get the reason %s.",
            result.student_id,
            notebook_path,
            error,
            NOTEBOOK_UNREADABLE,
        )
        error_reasons = dict.fromkeys(cell_names, (NOTEBOOK_UNREADABLE,))

    for grade_id, outcome in outcomes.items():
        if outcome.outcome == FAILED:
            outcomes[grade_id] = CellOutcome(FAILED, error_reasons.get(grade_id, (NO_ERROR_OUTPUT,)))
    return outcomes


def analyse_items(outcomes_by_student, max_scores):
    """Return one ``ItemStats`` per test cell of ``max_scores`` (``{grade_id: max points}``), in that order.

    ``outcomes_by_student`` maps student id to the ``read_outcomes`` result.
    """
    stats = {grade_id: ItemStats(grade_id, max_score) for grade_id, max_score in max_scores.items()}
    for outcomes in outcomes_by_student.values():
        for grade_id, outcome in outcomes.items():
            item = stats[grade_id]
            if outcome.outcome == PASSED:
                item.passed += 1
            elif outcome.outcome == FAILED:
                item.failed += 1
                item.reasons.update(outcome.reasons)
            else:
                item.not_graded += 1
    return list(stats.values())
