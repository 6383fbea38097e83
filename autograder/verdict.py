"""Findings of a check and the exception that a failing test cell raises."""

from dataclasses import dataclass, field

from . import messages


@dataclass
class Finding:
    """One failed condition: the test cell it belongs to, a stable reason key and the message fields."""

    check: str
    key: str
    fields: dict = field(default_factory=dict)
    hint: str | None = None
    hint_fields: dict = field(default_factory=dict)

    @property
    def message(self):
        line = messages.text(self.key, **self.fields)
        if self.hint:
            line += " " + messages.text(self.hint, **self.hint_fields)
        return line


class CheckFailed(AssertionError):
    """A test cell's verdict: which check failed and why, in the student's language.

    IPython prints ``_render_traceback_`` in place of a traceback, so the failing cell shows only
    the findings and never the source lines around the call, which may be hidden tests.
    """

    def __init__(self, check, findings):
        self.check = check
        self.findings = list(findings)
        super().__init__(self.render())

    def render(self):
        lines = [messages.text("report.failed", check=self.check, count=len(self.findings))]
        lines += [f"  - [{finding.key}] {finding.message}" for finding in self.findings]
        return "\n".join(lines)

    def _render_traceback_(self):
        return [f"CheckFailed: {self.render()}"]


def raise_if_failed(check, findings):
    findings = list(findings)
    if findings:
        raise CheckFailed(check, findings)
