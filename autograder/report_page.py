"""Instructor's batch report: an HTML page with two PNG charts, and CSV files, in one folder.

``write_report`` writes into ``<course root>/reports/``:

- ``batch_report.html``: per-student outcome and failure reasons of each test cell, the item
  analysis per test cell, and the two charts, linked by relative paths.
- ``score_histogram.png`` and ``failure_rate_by_test_cell.png``.
- ``item_analysis.csv`` (one row per test cell) and ``cell_outcomes.csv`` (one row per student
  and test cell).

The page is in Korean, or in English when ``AUTOGRADER_LANG=en`` (``messages.language``). Chart
labels are in Korean only when ``data.korean_font_family`` finds a Korean font, because
matplotlib's default DejaVu fonts have no Hangul glyphs.
"""

import csv
import html
import logging
import statistics
import time
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from . import messages, report
from .data import korean_font_family
from .item_analysis import FAILED, NO_ERROR_OUTPUT, NOTEBOOK_UNREADABLE, PASSED

log = logging.getLogger(__name__)

REPORT_DIRECTORY = "reports"
HTML_NAME = "batch_report.html"
HISTOGRAM_NAME = "score_histogram.png"
FAILURE_RATES_NAME = "failure_rate_by_test_cell.png"
ITEM_CSV_NAME = "item_analysis.csv"
OUTCOMES_CSV_NAME = "cell_outcomes.csv"

# Failure reasons listed per test cell in the HTML item analysis. The CSV lists all of them.
TOP_REASONS = 5

# Label key -> (Korean, English), in the order of messages.LANGUAGES.
LABELS = {
    "title": ("배치 채점 보고서", "Batch grading report"),
    "generated": ("작성 시각", "Written at"),
    "summary": (
        "학생 {students}명 중 {graded}명이 점수를 받았습니다. 총점 평균 {mean}, 중앙값 {median} (만점 {max_total}).",
        "{graded} of {students} students have scores. Total points: mean {mean}, median {median} (maximum {max_total}).",
    ),
    "summary_none": ("학생 {students}명 중 점수를 받은 학생이 없습니다.", "None of the {students} students has scores."),
    "items": ("테스트 셀별 분석", "Item analysis per test cell"),
    "students": ("학생별 결과", "Results per student"),
    "reason_keys": ("실패 원인 키", "Failure reason keys"),
    "files": ("파일", "Files"),
    "student": ("학생", "student"),
    "test_cell": ("테스트 셀", "test cell"),
    "points": ("배점", "points"),
    "passed": ("통과", "passed"),
    "failed": ("실패", "failed"),
    "not_graded": ("점수 없음", "not graded"),
    "pass_rate": ("통과율", "pass rate"),
    "top_reasons": ("주요 실패 원인 (학생 수)", "most common failure reasons (students)"),
    "total": ("총점", "total"),
    "status": ("상태", "status"),
    "notes": ("비고", "notes"),
    "key": ("키", "key"),
    "message": ("메시지 틀 ({{...}}에는 학생마다 다른 값이 들어감)", "message template ({{...}} is filled in per student)"),
    "histogram_alt": ("총점 히스토그램", "Histogram of total scores"),
    "failure_alt": ("테스트 셀별 실패율 막대그래프", "Bar chart of the failure rate per test cell"),
    "pass_rate_note": (
        "통과율과 실패율은 점수를 받은 학생 기준입니다. 원인 수는 그 원인으로 실패한 학생 수입니다.",
        "Pass and failure rates count only students with a score for the cell. "
        "A reason count is the number of students who failed with that reason.",
    ),
    # Chart labels. They are drawn in English unless a Korean font is installed.
    "histogram_title": ("총점 분포 (학생 {count}명)", "Total scores ({count} students)"),
    "histogram_x": ("총점", "total points"),
    "histogram_y": ("학생 수", "students"),
    "no_scores": ("점수가 있는 학생이 없습니다", "No student has scores"),
    "failure_title": ("테스트 셀별 실패율", "Failure rate per test cell"),
    "failure_x": ("실패율 (%)", "failure rate (%)"),
    "no_grade": ("점수 없음", "no scores"),
    # Meaning of the reason keys that do not come from messages.CATALOGUE.
    "reason.error": ("셀이 {ename} 예외로 끝났습니다.", "The cell raised {ename}."),
    NO_ERROR_OUTPUT: (
        "점수를 잃었지만 채점된 노트북에 오류 출력이 없습니다.",
        "The cell lost points, but the autograded notebook has no error output for it.",
    ),
    NOTEBOOK_UNREADABLE: (
        "채점된 노트북을 읽을 수 없어 원인을 알 수 없습니다.",
        "The autograded notebook could not be read, so the reason is unknown.",
    ),
}

PAGE_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #bbb; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.pass { background: #e6f4e6; }
td.fail { background: #fbe4e4; }
td.not_graded { background: #f0f0f0; color: #666; }
td.number { text-align: right; }
code { font-size: 0.9em; }
img { max-width: 100%; margin-right: 2em; }
"""


def label(key, language=None, **fields):
    """Return the label ``key`` in ``language`` (default: ``messages.language()``), filled with ``fields``."""
    language = language or messages.language()
    return LABELS[key][messages.LANGUAGES.index(language)].format(**fields)


def chart_language():
    """Return "ko" when the page is Korean and a Korean font is installed, else "en"."""
    if messages.language() == "ko" and korean_font_family() is not None:
        return "ko"
    return "en"


def scored_totals(results):
    """Return the total points of each student who has a score for at least one test cell."""
    return [result.total for result in results if any(cell.score is not None for cell in result.scores.values())]


def _points(value):
    return f"{value:g}"


def _percent(rate):
    return "-" if rate is None else f"{100 * rate:.0f}%"


def _save(figure, path):
    FigureCanvasAgg(figure)
    figure.savefig(path, dpi=100)


def plot_score_histogram(totals, max_total, path, language="en"):
    """Write a PNG histogram of ``totals`` with one bar per point from 0 to ``max_total``."""
    figure = Figure(figsize=(6, 3.5), layout="constrained")
    axis = figure.subplots()
    # Totals are whole points in this course. A maximum above 40 gets 20 equal bins instead.
    if max_total <= 40 and float(max_total).is_integer():
        bins = np.arange(-0.5, max_total + 1.5, 1.0)
    else:
        bins = np.linspace(0, max_total or 1, 21)
    if totals:
        axis.hist(totals, bins=bins, color="#4c72b0", edgecolor="white")
    else:
        axis.text(0.5, 0.5, label("no_scores", language), ha="center", va="center", transform=axis.transAxes)
    axis.set_xlim(bins[0], bins[-1])
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.yaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_title(label("histogram_title", language, count=len(totals)))
    axis.set_xlabel(label("histogram_x", language))
    axis.set_ylabel(label("histogram_y", language))
    _save(figure, path)


def plot_failure_rates(item_stats, path, language="en"):
    """Write a PNG horizontal bar chart of the failure rate per test cell, each bar labelled failed/graded."""
    names = [report.short_cell_name(item.grade_id) for item in item_stats]
    rates = [100 * (item.failure_rate or 0.0) for item in item_stats]
    figure = Figure(figsize=(6, 0.6 * len(item_stats) + 1.4), layout="constrained")
    axis = figure.subplots()
    bars = axis.barh(names, rates, color="#c44e52")
    for bar, item in zip(bars, item_stats):
        text = f"{item.failed}/{item.graded}" if item.graded else label("no_grade", language)
        axis.text(bar.get_width() + 1, bar.get_y() + bar.get_height() / 2, text, va="center")
    axis.invert_yaxis()
    axis.set_xlim(0, 115)
    axis.set_xticks(range(0, 101, 20))
    axis.set_title(label("failure_title", language))
    axis.set_xlabel(label("failure_x", language))
    _save(figure, path)


def write_charts(results, item_stats, directory):
    """Write the two PNG charts into ``directory``, with a Korean font when the labels are Korean."""
    language = chart_language()
    settings = {"font.family": korean_font_family()} if language == "ko" else {}
    max_total = sum(item.max_score for item in item_stats)
    with matplotlib.rc_context(settings):
        plot_score_histogram(scored_totals(results), max_total, Path(directory) / HISTOGRAM_NAME, language)
        plot_failure_rates(item_stats, Path(directory) / FAILURE_RATES_NAME, language)


def format_reasons(counts):
    return "; ".join(f"{key}={count}" for key, count in counts)


def write_item_csv(item_stats, path):
    """Write one row per test cell: points, passed, failed, not graded, pass rate and all reason counts."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["grade_id", "max_score", "passed", "failed", "not_graded", "pass_rate", "failure_reasons"])
        for item in item_stats:
            writer.writerow(
                [
                    item.grade_id,
                    _points(item.max_score),
                    item.passed,
                    item.failed,
                    item.not_graded,
                    "" if item.pass_rate is None else f"{item.pass_rate:.3f}",
                    format_reasons(item.most_common_reasons()),
                ]
            )


def write_outcomes_csv(results, outcomes_by_student, path):
    """Write one row per student and test cell: points, outcome and the reason keys joined by "; "."""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["student_id", "grade_id", "score", "max_score", "outcome", "reasons"])
        for result in results:
            for grade_id, outcome in outcomes_by_student[result.student_id].items():
                cell = result.scores.get(grade_id)
                score = "" if cell is None or cell.score is None else _points(cell.score)
                max_score = "" if cell is None else _points(cell.max_score)
                writer.writerow([result.student_id, grade_id, score, max_score, outcome.outcome, "; ".join(outcome.reasons)])


def describe_reason(key):
    """Return the message template of a reason key in the page language, a fixed sentence for the other keys, or ""."""
    if key in messages.CATALOGUE:
        return messages.CATALOGUE[key][messages.LANGUAGES.index(messages.language())]
    if key.startswith("error."):
        return label("reason.error", ename=key.removeprefix("error."))
    if key in LABELS:
        return label(key)
    return ""


def _row(cells, tag="td"):
    return "<tr>" + "".join(f"<{tag}>{cell}</{tag}>" for cell in cells) + "</tr>"


def _reason_list(keys):
    return ", ".join(f"<code>{html.escape(key)}</code>" for key in keys)


def _summary(results):
    totals = scored_totals(results)
    max_total = max((result.max_total for result in results), default=0.0)
    if not totals:
        return label("summary_none", students=len(results))
    return label(
        "summary",
        students=len(results),
        graded=len(totals),
        mean=f"{statistics.mean(totals):.1f}",
        median=_points(statistics.median(totals)),
        max_total=_points(max_total),
    )


def _item_table(item_stats):
    header = ["test_cell", "points", "passed", "failed", "not_graded", "pass_rate", "top_reasons"]
    rows = [_row([html.escape(label(key)) for key in header], "th")]
    for item in item_stats:
        reasons = "<br>".join(
            f"<code>{html.escape(key)}</code> × {count}" for key, count in item.most_common_reasons(TOP_REASONS)
        )
        numbers = [_points(item.max_score), item.passed, item.failed, item.not_graded, _percent(item.pass_rate)]
        cells = "".join(f'<td class="number">{number}</td>' for number in numbers)
        rows.append(f"<tr><td><code>{html.escape(item.grade_id)}</code></td>{cells}<td>{reasons}</td></tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _outcome_cell(cell_score, outcome):
    if cell_score is None or cell_score.score is None:
        points = "-"
    else:
        points = f"{_points(cell_score.score)}/{_points(cell_score.max_score)}"
    if outcome.outcome == PASSED:
        text = f"{points} {html.escape(label('passed'))}"
    elif outcome.outcome == FAILED:
        text = f"{points} {html.escape(label('failed'))}<br>{_reason_list(outcome.reasons)}"
    else:
        text = html.escape(label("not_graded"))
    return f'<td class="{outcome.outcome}">{text}</td>'


def _student_table(results, outcomes_by_student, cell_names):
    header = [label("student"), *(report.short_cell_name(name) for name in cell_names)]
    header += [label("total"), label("status"), label("notes")]
    rows = [_row([html.escape(text) for text in header], "th")]
    language_index = messages.LANGUAGES.index(messages.language())
    for result in results:
        outcomes = outcomes_by_student[result.student_id]
        cells = "".join(_outcome_cell(result.scores.get(name), outcomes[name]) for name in cell_names)
        total = f"{_points(result.total)}/{_points(result.max_total)}" if result.scores else "-"
        status = report.STATUSES[result.status][language_index] if result.status in report.STATUSES else result.status
        rows.append(
            f"<tr><td>{html.escape(result.student_id)}</td>{cells}"
            f'<td class="number">{total}</td><td>{html.escape(status)}</td>'
            f"<td>{html.escape(result.notes_text())}</td></tr>"
        )
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _reason_table(item_stats):
    keys = sorted({key for item in item_stats for key in item.reasons})
    if not keys:
        return ""
    rows = [_row([html.escape(label("key")), html.escape(label("message"))], "th")]
    rows += [_row([f"<code>{html.escape(key)}</code>", html.escape(describe_reason(key))]) for key in keys]
    return f"<h2>{html.escape(label('reason_keys'))}</h2>\n<table>\n" + "\n".join(rows) + "\n</table>"


def render_html(results, outcomes_by_student, item_stats):
    """Return the report page. Every student id, status, note and reason key in it is HTML-escaped."""
    cell_names = [item.grade_id for item in item_stats]
    title = html.escape(label("title"))
    written = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    files = ", ".join(
        f'<a href="{name}">{name}</a>' for name in (ITEM_CSV_NAME, OUTCOMES_CSV_NAME, HISTOGRAM_NAME, FAILURE_RATES_NAME)
    )
    return f"""<!DOCTYPE html>
<html lang="{messages.language()}">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{PAGE_STYLE}</style>
</head>
<body>
<h1>{title}</h1>
<p>{html.escape(label("generated"))}: {html.escape(written)}</p>
<p>{html.escape(_summary(results))}</p>
<p><img src="{HISTOGRAM_NAME}" alt="{html.escape(label("histogram_alt"))}">
<img src="{FAILURE_RATES_NAME}" alt="{html.escape(label("failure_alt"))}"></p>
<h2>{html.escape(label("items"))}</h2>
<p>{html.escape(label("pass_rate_note"))}</p>
{_item_table(item_stats)}
<h2>{html.escape(label("students"))}</h2>
{_student_table(results, outcomes_by_student, cell_names)}
{_reason_table(item_stats)}
<p>{html.escape(label("files"))}: {files}</p>
</body>
</html>
"""


def write_report(results, outcomes_by_student, item_stats, directory):
    """Write the HTML page, the two PNG charts and the two CSV files into ``directory`` and return the page's path.

    ``outcomes_by_student`` maps each student id of ``results`` to ``item_analysis.read_outcomes``,
    and ``item_stats`` is ``item_analysis.analyse_items`` of the same outcomes.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_charts(results, item_stats, directory)
    write_item_csv(item_stats, directory / ITEM_CSV_NAME)
    write_outcomes_csv(results, outcomes_by_student, directory / OUTCOMES_CSV_NAME)
    page = directory / HTML_NAME
    page.write_text(render_html(results, outcomes_by_student, item_stats), encoding="utf-8")
    log.info("Wrote the batch report for %d student(s) to %s", len(results), directory)
    return page
