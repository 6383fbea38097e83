"""Student-facing self-checks: a shape table against the reference and a pass/fail table of visible checks.

They print what they find instead of raising it, so a student can run them at any time. The graded test cells call
``autograder.checks`` instead, with more (hidden) checks.
"""

from . import checks, messages, reference
from .tables import format_table
from .analysis import BATCH, analyse
from .stages import pool_stages

_PASS, _FAIL = "✓", "✗"


def _shape(shape):
    return checks.shape_text(shape) if shape else messages.text("label.none")


def shape_rows(model_cls):
    """Return (stage, expected shape, student's shape) rows for a 224x224 input, and the run problem if any.

    The rows are None when the model cannot be built or fails before its first Linear layer.
    """
    analysis = analyse(model_cls, checks.POOL_SHAPES)
    if checks.blocking_problem(analysis):
        return None, analysis.problem
    ops = analysis.train_ops
    stages = pool_stages(ops)
    rows = [(messages.text("table.input"), (BATCH, 3, 224, 224), ops[0].in_shape if ops else None)]
    for stage, want in zip(stages, reference.POOL_SHAPES):
        rows.append((messages.text("label.pool", block=stage.block), (BATCH, *want), stage.shape))

    linears = [op for op in ops if op.kind == "linear"]
    sizes = [reference.FLATTENED_FEATURES, reference.HIDDEN_FEATURES, reference.HIDDEN_FEATURES]
    for index, fan_in in enumerate(sizes):
        actual = linears[index].in_shape if index < len(linears) else None
        rows.append((f"fc{index + 1} {messages.text('table.input')}", (BATCH, fan_in), actual))
    rows.append((messages.text("table.output"), (BATCH, 10), analysis.output_shape))
    return rows, analysis.problem


def show_shape_trace(model_cls):
    """Print each stage's feature-map shape next to the expected one (N is the batch size)."""
    rows, problem = shape_rows(model_cls)
    if rows is None:
        print(f"{_FAIL} [{problem.key}] {problem.message}")
        return
    header = [messages.text("table.stage"), messages.text("table.expected"), messages.text("table.actual"), "OK"]
    print(format_table(header, [[stage, _shape(want), _shape(got), _PASS if want == got else _FAIL]
                                for stage, want, got in rows]))
    if problem:
        print(f"{_FAIL} [{problem.key}] {problem.message}")


_PARTS = {
    "vgg11": [(checks.LAYERS, checks.layer_findings), (checks.POOL_SHAPES, checks.pool_findings),
              (checks.CLASSIFIER, checks.classifier_findings)],
    "finetune": [(checks.FINETUNE, checks.finetune_findings)],
}


def check(part, obj):
    """Print a pass/fail table of the visible checks of ``part`` ("vgg11" or "finetune")."""
    if part not in _PARTS:
        raise ValueError(f"unknown part {part!r}; use one of {sorted(_PARTS)}")
    rows = []
    for name, findings_of in _PARTS[part]:
        findings = findings_of(obj)
        if not findings:
            rows.append([name, _PASS + " " + messages.text("report.passed"), ""])
        for finding in findings:
            rows.append([name, _FAIL + " " + messages.text("report.failed_short"), f"[{finding.key}] {finding.message}"])
    header = [messages.text("table.check"), messages.text("table.result"), messages.text("table.detail")]
    print(format_table(header, rows))
