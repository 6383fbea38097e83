"""nbgrader preprocessors for this course, wired in by ``nbgrader_config.py``.

- ``OverwriteCellsWithHiddenTests`` replaces ``OverwriteCells`` in ``Autograde.sanitize_preprocessors``.
  It puts the hidden tests back into untouched test cells without logging a checksum warning, and
  puts deleted test cells back without the KeyError of nbgrader's ``add_missing_cells``.
- ``ClearHiddenTestsFromFeedback`` runs first in ``GenerateFeedback.preprocessors`` and removes the
  hidden tests from the feedback HTML: the cell sources and the traceback lines that quote them.
- ``BoundedExecute`` replaces ``Execute`` in ``Autograde.autograde_preprocessors``. It adds a time
  limit for the whole notebook on top of the per-cell ``timeout``, caps each cell's outputs,
  restarts a kernel that dies and records each limit that a cell hits in the notebook metadata.

They were written against nbgrader 0.9.6 and reuse its ``Gradebook`` and ``ClearHiddenTests``.
"""

import math
import re
import time

from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbclient.util import ensure_async, run_sync
from nbformat.v4 import new_code_cell
from nbformat.v4.nbbase import random_cell_id
from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor, OverwriteCells
from traitlets import Integer, List

from autograder import limit_events
from autograder.sandbox.kernel import SandboxKernelManager, read_sandbox_status

# IPython colours tracebacks with ANSI SGR sequences, also inside the quoted source lines.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")

# A quoted source line in an IPython traceback frame: "      3 code" or "----> 4 code".
_TRACEBACK_SOURCE_LINE = re.compile(r"^\s*(?:-*>)?\s*\d+ (?P<code>.*)$")


def remove_hidden_tests(source, clearer=None):
    """Return ``source`` without its hidden-test regions, as ``nbgrader generate_assignment`` removes them.

    ``clearer`` is the nbgrader ``ClearHiddenTests`` that does the work. Pass one created with
    ``parent=`` so that its delimiters (``begin_test_delimeter``, ``end_test_delimeter``) follow the
    config. The default uses nbgrader's delimiters, "BEGIN HIDDEN TESTS" and "END HIDDEN TESTS".
    """
    scratch = new_code_cell(source)
    (clearer or ClearHiddenTests())._remove_hidden_test_region(scratch)
    return scratch.source


def hidden_test_lines(source, clearer=None):
    """Return the stripped, non-blank lines of ``source`` that ``remove_hidden_tests`` removes.

    The delimiter lines are included. A hidden line that also occurs outside the hidden region is not.
    """
    kept = set(remove_hidden_tests(source, clearer).split("\n"))
    removed = set()
    for line in source.split("\n"):
        if line not in kept and line.strip():
            removed.add(line.strip())
    return removed


class RestoreCellMetadata(NbGraderPreprocessor):
    """Give each cell with a known grade_id the nbgrader flags and points that the gradebook stores.

    A submission may turn a test cell's ``grade`` flag off, change its points, or contain a cell pasted
    from another nbgrader notebook. nbgrader 0.9.6 then stops autograding that submission with
    "Inconsistent checksums" or KeyError: 'grade_id'. Here a known grade_id gets its stored ``grade``,
    ``solution``, ``locked`` and ``points`` back, and a cell with an unknown or no grade_id loses its
    nbgrader metadata and runs as an ordinary cell. It runs first among the sanitize preprocessors.
    """

    def preprocess(self, nb, resources):
        try:
            with Gradebook(resources["nbgrader"]["db_url"]) as gradebook:
                stored = gradebook.find_notebook(resources["nbgrader"]["notebook"], resources["nbgrader"]["assignment"])
                points = {cell.name: cell.max_score for cell in stored.grade_cells}
                solutions = {cell.name for cell in stored.solution_cells}
                locked = {cell.name: cell.locked for cell in stored.source_cells}
        except MissingEntry:
            return nb, resources

        for cell in nb.cells:
            metadata = cell.metadata.get("nbgrader")
            if metadata is None:
                continue
            grade_id = metadata.get("grade_id")
            if grade_id not in locked:
                self.log.warning("Cell with unknown grade_id %r: treated as an ordinary cell", grade_id)
                del cell.metadata["nbgrader"]
                continue
            restored = {"grade": grade_id in points, "solution": grade_id in solutions, "locked": locked[grade_id]}
            if grade_id in points:
                restored["points"] = points[grade_id]
            changed = {key for key, value in restored.items() if metadata.get(key) != value}
            if changed:
                self.log.warning("Cell %s: restoring nbgrader metadata %s", grade_id, ", ".join(sorted(changed)))
            metadata.update(restored)
            if grade_id not in points:
                metadata.pop("points", None)
        return nb, resources


class OverwriteCellsWithHiddenTests(OverwriteCells):
    """``OverwriteCells`` that restores hidden tests silently and puts deleted grade cells back reliably.

    ``generate_assignment`` stores each locked cell's source and checksum in the gradebook before
    ``ClearHiddenTests`` runs, so the released test cells never match the stored checksum.
    nbgrader 0.9.6 then logs "Attribute 'checksum' for cell ... has changed!" for every test cell of
    every submission, even untouched ones, and restores the stored source. This subclass restores the
    stored source first when the submitted source equals the stored source with its hidden tests
    removed, which is the released source. A locked cell that the student edited still fails the
    checksum comparison in ``OverwriteCells``, which logs the warning and restores the stored source.

    ``add_missing_grade_cells`` replaces nbgrader's version, which fails on this notebook.
    """

    def preprocess(self, nb, resources):
        self._hidden_test_clearer = ClearHiddenTests(parent=self)
        _drop_cleared_metadata(nb)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, cell_index):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        if grade_id is not None:
            self._restore_released_hidden_tests(cell, grade_id)
        return super().preprocess_cell(cell, resources, cell_index)

    def _restore_released_hidden_tests(self, cell, grade_id):
        try:
            source_cell = self.gradebook.find_source_cell(grade_id, self.notebook_id, self.assignment_id)
        except MissingEntry:
            return  # OverwriteCells logs this case

        if not source_cell.locked or cell.cell_type != source_cell.cell_type:
            return
        if cell.source == source_cell.source:
            return
        if cell.source != remove_hidden_tests(source_cell.source, self._hidden_test_clearer):
            return

        self.log.debug("Restoring the hidden tests of unchanged cell %s", grade_id)
        cell.source = source_cell.source

    def add_missing_grade_cells(self, nb, resources):
        """Put each deleted grade cell back after the nearest earlier source cell that the submission has.

        Used when ``OverwriteCells.add_missing_cells`` is True. nbgrader 0.9.6 looks only at the
        directly preceding source cell, and only among grade and solution cells, so it raises
        KeyError when that cell is a locked markdown cell, as before test_finetune_frozen here.
        That error stops autograding of the whole submission.
        """
        source_notebook = self.gradebook.find_notebook(self.notebook_id, self.assignment_id)
        # NOTE: like nbgrader, this takes the gradebook's order of source cells as the notebook order.
        # That holds for cells stored by one generate_assignment run, not for cells added by a later run.
        source_cells = list(source_notebook.source_cells)
        max_scores = {cell.name: cell.max_score for cell in source_notebook.grade_cells}
        solution_ids = {cell.name for cell in source_notebook.solution_cells}

        for position, source_cell in enumerate(source_cells):
            if source_cell.name not in max_scores or source_cell.name in _grade_ids(nb):
                continue
            self.log.warning("Missing grade cell %s encountered, adding to notebook", source_cell.name)
            missing_cell = self.missing_cell_transform(
                source_cell, max_scores[source_cell.name], is_solution=source_cell.name in solution_ids
            )
            # nbgrader builds the cell without an id, which nbformat 5 warns about when it validates.
            missing_cell.id = random_cell_id()
            nb.cells.insert(_insert_index(nb, [cell.name for cell in source_cells[:position]]), missing_cell)
        return nb, resources


def _drop_cleared_metadata(nb):
    """Remove the ``nbgrader`` metadata that ``DeduplicateIds`` emptied on the second copy of a cell.

    nbgrader 0.9.6 keeps an empty dict there, and ``OverwriteCells.add_missing_task_cells`` then raises
    KeyError: 'grade_id', which stops autograding of the whole submission (jupyter/nbgrader#1083).
    Without the key, the copy is an ordinary code cell that earns no points.
    """
    for cell in nb.cells:
        metadata = cell.metadata.get("nbgrader")
        if metadata is not None and "grade_id" not in metadata:
            del cell.metadata["nbgrader"]


def _grade_ids(nb):
    return [cell.metadata.get("nbgrader", {}).get("grade_id") for cell in nb.cells]


def _insert_index(nb, earlier_ids):
    """Return the index just after the cell of ``nb`` with the last of ``earlier_ids`` that ``nb`` has, else 0."""
    present = _grade_ids(nb)
    for grade_id in reversed(earlier_ids):
        if grade_id in present:
            return present.index(grade_id) + 1
    return 0


class ClearHiddenTestsFromFeedback(ClearHiddenTests):
    """``ClearHiddenTests`` for feedback: removes hidden tests from sources and from tracebacks.

    The autograded notebook contains the hidden tests, because autograding restores them, and
    ``generate_feedback`` renders that notebook as it is. Besides the source, an IPython traceback
    quotes the lines around the failing line, so a failing test can show hidden lines in its
    output. This preprocessor drops every quoted traceback line whose code is a line of the cell's
    hidden-test region, and keeps the rest of the traceback, including the exception message.
    Printed output and results of hidden lines are not removed.
    """

    # Declared like nbgrader's GetGrades does, because HTMLExporter configures this option for every
    # NbConvertBase and traitlets warns about config options that a class does not declare.
    display_data_priority = List(
        ["text/html", "application/pdf", "text/latex", "image/svg+xml", "image/png", "image/jpeg", "text/plain"]
    ).tag(config=True)

    def preprocess_cell(self, cell, resources, cell_index):
        hidden_lines = hidden_test_lines(cell.source, self) if cell.cell_type == "code" else set()
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if hidden_lines:
            for output in cell.get("outputs", []):
                if output.get("output_type") == "error":
                    output["traceback"] = [
                        _remove_quoted_lines(entry, hidden_lines) for entry in output.get("traceback", [])
                    ]
        return cell, resources


def _remove_quoted_lines(traceback_entry, hidden_lines):
    kept = []
    for line in traceback_entry.split("\n"):
        match = _TRACEBACK_SOURCE_LINE.match(_ANSI_ESCAPE.sub("", line))
        if match and match.group("code").strip() in hidden_lines:
            continue
        kept.append(line)
    return "\n".join(kept)


class BoundedExecute(Execute):
    """``Execute`` with limits for the whole notebook and for each cell's outputs, and kernel restarts.

    - ``notebook_timeout``: nbgrader 0.9.6 and nbclient bound each cell (``Execute.timeout``) but not
      the notebook. Here each cell's timeout is cut to the time left of ``notebook_timeout``, counted
      from kernel start. When no time is left, each remaining cell gets 1 s, so a cell that returns
      at once still runs and a slow one is interrupted with the ``error_on_timeout`` error.
    - ``max_output_chars`` and ``max_outputs``: outputs beyond them are dropped while the cell runs,
      after one note, so a cell that prints without end cannot fill this process's memory.
    - A kernel that dies during a cell (exit, signal, OOM kill) or stays busy after the timeout's
      interrupt gets an error output in that cell and is restarted, and the remaining cells run.
      nbclient would raise DeadKernelError or CellTimeoutError, which ends autograding of the notebook.
    - Every limit that a cell hits is recorded in ``nb.metadata["autograder"]["limits"]``; see
      ``autograder.limit_events`` for the kinds.

    Kernels are started with ``SandboxKernelManager`` (ipc transport), which the sandboxed kernelspec
    needs and which works for other local kernels too.
    """

    notebook_timeout = Integer(
        None,
        allow_none=True,
        help="Maximum time in seconds to execute the whole notebook. None or 0 means no limit.",
    ).tag(config=True)

    max_output_chars = Integer(
        1_000_000,
        allow_none=True,
        help="Maximum characters of output kept per cell (stream text, data values and tracebacks). "
        "None or 0 means no limit.",
    ).tag(config=True)

    max_outputs = Integer(
        1000,
        allow_none=True,
        help="Maximum number of outputs kept per cell. None or 0 means no limit.",
    ).tag(config=True)

    _deadline = None
    _reported_deadline = False
    _cell_index = None
    _cell_output_chars = 0
    _cell_output_count = 0
    _cell_truncated = False

    def __init__(self, **kwargs):
        kwargs.setdefault("kernel_manager_class", SandboxKernelManager)
        super().__init__(**kwargs)

    def preprocess(self, nb, resources=None, km=None):
        self._reported_deadline = False
        self._deadline = time.monotonic() + self.notebook_timeout if self.notebook_timeout else None
        try:
            return super().preprocess(nb, resources, km=km)
        finally:
            self._deadline = None

    def _get_timeout(self, cell):
        cell_timeout = super()._get_timeout(cell)
        if self._deadline is None:
            return cell_timeout

        remaining = math.ceil(self._deadline - time.monotonic())
        if remaining < 1:
            if not self._reported_deadline:
                self.log.warning(
                    "Notebook time limit of %s s reached; each remaining cell gets 1 s", self.notebook_timeout
                )
                self._reported_deadline = True
            remaining = 1
        if cell_timeout is None:
            return remaining
        return min(cell_timeout, remaining)

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        status = read_sandbox_status(self.km.connection_file) if self.km.connection_file else {}
        if "enforced" in status:
            self.nb.metadata.setdefault("autograder", {}).setdefault(
                "sandbox", {"enforced": status["enforced"], "missing": status.get("missing", [])}
            )
        return kc

    # nbclient binds its synchronous wrappers to its own coroutines, so they are bound again here.
    start_new_kernel_client = run_sync(async_start_new_kernel_client)

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        self._cell_index = cell_index
        self._cell_output_chars = 0
        self._cell_output_count = 0
        self._cell_truncated = False
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        for output in cell.get("outputs", []):
            if limit_events.is_memory_error(output):
                limit_events.record(self.nb, cell, cell_index, "memory_limit", f"{output['ename']}: {output['evalue']}"[:500])
                break
        return cell

    execute_cell = run_sync(async_execute_cell)

    def preprocess_cell(self, cell, resources, index):
        try:
            return super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            kind, detail = limit_events.classify_exit(self._sandbox_status(), self._kernel_returncode())
            self.log.warning("Kernel died while running cell %s (%s); restarting it", index, detail)
            limit_events.record(self.nb, cell, index, kind, detail)
            cell.outputs.append(limit_events.kernel_died_output(kind, detail))
        except CellTimeoutError:
            # Raised when the kernel is still busy after the interrupt (it ignores SIGINT or blocks it).
            timeout = self._get_timeout(cell)
            self.log.warning("Kernel still busy after interrupting cell %s; restarting it", index)
            limit_events.record(
                self.nb, cell, index, "kernel_unresponsive", f"still busy after the interrupt at {timeout} s"
            )
            cell.outputs.append(limit_events.kernel_unresponsive_output(timeout))
        self._restart_kernel()
        return cell, self.resources

    def _sandbox_status(self):
        if self.km is None or not self.km.connection_file:
            return {}
        return read_sandbox_status(self.km.connection_file)

    def _kernel_returncode(self):
        process = getattr(getattr(self.km, "provisioner", None), "process", None)
        return getattr(process, "returncode", None)

    async def _async_restart_kernel(self):
        if self.kc is not None:
            await ensure_async(self.kc.stop_channels())
            self.kc = None
        await ensure_async(self.km.restart_kernel(now=True))
        await self.async_start_new_kernel_client()

    _restart_kernel = run_sync(_async_restart_kernel)

    async def _async_handle_timeout(self, timeout, cell=None):
        if cell is not None and self._cell_index is not None:
            if self._deadline is not None and time.monotonic() >= self._deadline - 1:
                kind, detail = "notebook_timeout", f"notebook time limit of {self.notebook_timeout} s ran out"
            else:
                kind, detail = "cell_timeout", f"cell ran longer than {timeout} s"
            limit_events.record(self.nb, cell, self._cell_index, kind, detail)
        return await super()._async_handle_timeout(timeout, cell)

    def output(self, outs, msg, display_id, cell_index):
        content = msg.get("content", {})
        size = limit_events.output_size(content)
        within_chars = not self.max_output_chars or self._cell_output_chars + size <= self.max_output_chars
        within_count = not self.max_outputs or self._cell_output_count < self.max_outputs
        if within_chars and within_count and not self._cell_truncated:
            self._cell_output_chars += size
            self._cell_output_count += 1
            return super().output(outs, msg, display_id, cell_index)

        if msg["msg_type"] == "error":
            # The exception that ended the cell is always kept, shortened to the limit.
            return super().output(outs, _shortened_error(msg, self.max_output_chars), display_id, cell_index)
        if self._cell_truncated:
            return None

        self._cell_truncated = True
        kept_chars = self._cell_output_chars
        remaining = (self.max_output_chars or size) - kept_chars
        if msg["msg_type"] == "stream" and remaining > 0 and within_count:
            head = dict(msg, content=dict(content, text=content["text"][:remaining]))
            super().output(outs, head, display_id, cell_index)
            kept_chars += len(head["content"]["text"])
        if within_chars:
            detail = f"more than {self.max_outputs} outputs"
        else:
            detail = f"more than {self.max_output_chars} characters"
        limit_events.record(self.nb, self.nb.cells[cell_index], cell_index, "output_truncated", detail)
        outs.append(limit_events.truncation_note(kept_chars))
        return None


def _shortened_error(msg, max_chars):
    if not max_chars:
        return msg
    content = dict(msg["content"])
    content["evalue"] = str(content.get("evalue", ""))[:max_chars]
    kept, used = [], 0
    for line in content.get("traceback") or []:
        if used + len(line) > max_chars:
            kept.append(line[: max(0, max_chars - used)])
            break
        kept.append(line)
        used += len(line)
    content["traceback"] = kept
    return dict(msg, content=content)
