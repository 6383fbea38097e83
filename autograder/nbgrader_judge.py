"""nbgrader preprocessors that take the test cells' verdicts from the judge, not from the student's kernel.

Wired into ``Autograde.autograde_preprocessors`` by ``nbgrader_config.py``:

- ``PrepareHandIns`` runs before execution. It makes a fresh, empty hand-in folder and names it in
  ``AUTOGRADER_HANDIN_DIR``, which the kernel inherits, so that the hidden line of each test cell
  (``handin.hand_in``) writes the model there.
- ``JudgeHandIns`` runs after execution and before ``SaveAutoGrades``. It runs
  ``python -P -m autograder.judge`` on the folder in a new process, which never imports student code.
  In each test cell it drops every output that nbgrader reads as a score (errors, stderr, results)
  and puts the judge's verdict first. nbgrader then scores the cell from that verdict alone: an
  error output means 0 points.

Whatever the student's code did inside the kernel (patched checks, hidden tracebacks, printed text
that looks like a pass) cannot pass a test cell: only the judge writes error outputs into test cells.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from nbformat.v4 import new_output
from nbgrader.preprocessors import NbGraderPreprocessor
from traitlets import Bool, Integer, List, Unicode

from . import messages
from .course import TEST_CELLS
from .handin import HANDIN_DIR_VARIABLE
from .verdict import CheckFailed, Finding

_RESOURCE_KEY = "autograder_handin_dir"
_PREFIX = "vgg11-handin-"
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)


class PrepareHandIns(NbGraderPreprocessor):
    """Create an empty hand-in folder for this notebook and name it in ``AUTOGRADER_HANDIN_DIR``.

    As root, the folder is a tmpfs of ``size_mib``, so student code cannot fill the disk through it.
    Folders that a killed grading left behind are removed after ``stale_hours``.
    """

    directory = Unicode("", help="Folder under which hand-in folders are made (default: the system's temp folder).").tag(
        config=True
    )
    size_mib = Integer(64, help="Size of the hand-in tmpfs in MiB, where it can be mounted (as root).").tag(config=True)
    stale_hours = Integer(6, help="Age after which a hand-in folder of an earlier run is removed.").tag(config=True)

    def preprocess(self, nb, resources):
        parent = self.directory or tempfile.gettempdir()
        _remove_stale_folders(parent, self.stale_hours * 3600)
        folder = tempfile.mkdtemp(prefix=_PREFIX, dir=parent)
        if os.geteuid() == 0 and shutil.which("mount"):
            mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size_mib}m,mode=0777,nosuid,nodev",
                                      "tmpfs", folder], capture_output=True, check=False)
            if mounted.returncode != 0:
                self.log.warning("The hand-in folder is not size-limited: mount failed: %s", mounted.stderr.strip())
        # The kernel may run as another, unprivileged user (see autograder.sandbox), which must write here.
        os.chmod(folder, 0o777)
        os.environ[HANDIN_DIR_VARIABLE] = folder
        resources[_RESOURCE_KEY] = folder
        return nb, resources


def _remove_folder(folder):
    if os.path.ismount(folder):
        subprocess.run(["umount", "--lazy", folder], capture_output=True, check=False)
    shutil.rmtree(folder, ignore_errors=True)


def _remove_stale_folders(parent, age_seconds):
    now = time.time()
    for entry in os.scandir(parent):
        try:
            if entry.name.startswith(_PREFIX) and now - entry.stat(follow_symlinks=False).st_mtime > age_seconds:
                _remove_folder(entry.path)
        except OSError:
            continue


class JudgeHandIns(NbGraderPreprocessor):
    """Judge the hand-in folder in a separate process and write each test cell's verdict as its outcome."""

    test_cells = List(list(TEST_CELLS), help="grade_ids of the test cells that the judge decides.").tag(config=True)
    timeout = Integer(600, help="Seconds that the judge process may take for one notebook.").tag(config=True)
    sandboxed = Bool(True, help="Run the judge in the sandbox of autograder.sandbox, like the kernel.").tag(config=True)

    def preprocess(self, nb, resources):
        folder = resources.pop(_RESOURCE_KEY, None) or os.environ.get(HANDIN_DIR_VARIABLE)
        if not folder:
            raise RuntimeError("JudgeHandIns needs PrepareHandIns before the execution preprocessor")
        try:
            verdicts = self.run_judge(folder)
        finally:
            os.environ.pop(HANDIN_DIR_VARIABLE, None)
            _remove_folder(folder)

        limits = _limits_by_position(nb)
        for index, cell in enumerate(nb.cells):
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.cell_type != "code" or grade_id not in self.test_cells:
                continue
            verdict = verdicts.get(grade_id, {"status": "missing"})
            self.log.info("Verdict of %s: %s", grade_id, _summary(verdict))
            reason = _kernel_reason(cell, index, limits)
            informative = [output for output in cell.outputs if not _scores(output)]
            cell.outputs = [_verdict_output(grade_id, verdict, reason), *informative]
        return nb, resources

    def run_judge(self, folder):
        """Run the judge on ``folder`` and return its verdicts. Raises RuntimeError when it fails.

        A judge that fails is the grader's problem, not the student's, so nbgrader records no grade and
        reports the error for this submission.
        """
        command = [sys.executable, "-P", "-m", "autograder.judge", folder]
        env = {**os.environ, "PYTHONPATH": _REPO_ROOT}
        env.pop(HANDIN_DIR_VARIABLE, None)
        if self.sandboxed:
            return self._run_sandboxed(command, env, folder)
        try:
            done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=tempfile.gettempdir(),
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as error:
            raise RuntimeError(f"the judge took more than {self.timeout} s") from error
        if done.returncode != 0:
            raise RuntimeError(f"the judge failed (exit status {done.returncode}): {done.stderr[-2000:]}")
        return json.loads(done.stdout)

    def _run_sandboxed(self, command, env, folder):
        """Run the judge like a kernel: no network, its own uid, and only the package and ``folder`` to read.

        The judge reads files that student code wrote, so a flaw in reading them must not reach the
        course files. coreutils' ``timeout`` inside the sandbox ends it after ``timeout`` seconds.
        """
        from .sandbox import run_sandboxed  # noqa: PLC0415 - only graders with the sandbox on need it
        from .sandbox.kernel import student_environment  # noqa: PLC0415

        with tempfile.TemporaryDirectory(prefix="vgg11-judge-") as scratch, \
                tempfile.TemporaryFile("w+", encoding="utf-8") as out, \
                tempfile.TemporaryFile("w+", encoding="utf-8") as err:
            env = {**student_environment(env), "PYTHONPATH": _REPO_ROOT, "HOME": scratch, "MPLCONFIGDIR": scratch}
            timeout_program = shutil.which("timeout")
            if timeout_program:
                command = [timeout_program, "--signal=KILL", str(self.timeout), *command]
            result = run_sandboxed(command, cwd=scratch, copy_cwd=False, readable=[os.path.join(_REPO_ROOT, "autograder"), folder],
                                   env=env, stdout=out, stderr=err)
            out.seek(0)
            err.seek(0)
            if result.exit_code != 0:
                raise RuntimeError(f"the judge failed in the sandbox ({result.as_dict()}): {err.read()[-2000:]}")
            return json.loads(out.read())


def _scores(output):
    """Return True for an output that nbgrader's ``determine_grade`` reads as a score.

    It reads the first error, stderr stream or ``execute_result`` (as partial credit), so the kernel's
    outputs of these kinds are dropped and the verdict goes first.
    """
    return output.output_type in ("error", "execute_result") or (
        output.output_type == "stream" and output.get("name") == "stderr"
    )


def _summary(verdict):
    if verdict["status"] != "judged":
        return verdict["status"]
    return ", ".join(finding["key"] for finding in verdict["findings"]) or "passed"


def _limits_by_position(nb):
    """Return the limit events that ``BoundedExecute`` recorded, as (cell index, event), in notebook order.

    An event names its cell by grade_id or by index (see ``autograder.limit_events``).
    """
    positions = {cell.metadata.get("nbgrader", {}).get("grade_id"): index for index, cell in enumerate(nb.cells)}
    located = []
    for event in nb.metadata.get("autograder", {}).get("limits", []):
        label = event.get("cell")
        index = label if isinstance(label, int) else positions.get(label)
        if index is not None:
            located.append((index, event))
    return sorted(located, key=lambda item: item[0])


def _kernel_reason(cell, index, limits):
    """Say why the kernel handed nothing in for the cell at ``index``.

    That is the last limit hit in this cell or an earlier one, such as a kernel that died in the answer
    cell, else the cell's own error.
    """
    # A truncated output stops nothing, so it is never the reason.
    earlier = [event for position, event in limits if position <= index and event.get("kind") != "output_truncated"]
    if earlier:
        event = earlier[-1]
        text = f"{event.get('kind', '')} ({event.get('cell')}): {event.get('detail', '')}"
        return messages.text("handin.reason_limit", limit=text[:300])
    for output in cell.outputs:
        if output.output_type == "error":
            return messages.text("handin.reason_error", error=f"{output.ename}: {output.evalue}"[:200])
    return ""


def _verdict_output(grade_id, verdict, kernel_reason):
    """Return the output that states the verdict: a stream when the cell passes, else an error output."""
    if verdict["status"] == "missing":
        findings = [Finding(grade_id, "handin.missing", {"reason": kernel_reason})]
    elif verdict["status"] == "invalid":
        findings = [Finding(grade_id, "handin.invalid", {"detail": verdict.get("detail", "")})]
    else:
        findings = [Finding(grade_id, item["key"], item.get("fields", {}), item.get("hint"), item.get("hint_fields", {}))
                    for item in verdict["findings"]]
    if not findings:
        return new_output("stream", name="stdout", text=messages.text("verdict.passed") + "\n")
    failure = CheckFailed(grade_id, findings)
    return new_output("error", ename="CheckFailed", evalue=failure.render(), traceback=failure._render_traceback_())
