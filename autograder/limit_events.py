"""Limit events of an autograded notebook: what ``BoundedExecute`` records and the notes it adds.

Each event is a dict ``{"cell": <grade_id or cell index>, "kind": <KIND>, "detail": <text>}`` in
``nb.metadata["autograder"]["limits"]``, in the order the events happened. Kinds:

- ``cell_timeout``: the cell ran longer than ``Execute.timeout`` and was interrupted.
- ``notebook_timeout``: the cell was interrupted because ``BoundedExecute.notebook_timeout`` ran out.
- ``kernel_unresponsive``: the kernel stayed busy after the interrupt, so it was restarted.
- ``kernel_died``: the kernel process ended during the cell (exit code or signal in ``detail``).
- ``memory_limit``: an allocation failed (MemoryError) or the OOM killer ended the kernel.
- ``cpu_time_limit``: the kernel used up RLIMIT_CPU and was ended with SIGXCPU.
- ``output_truncated``: the cell's outputs went over ``BoundedExecute.max_output_chars``.

``nb.metadata["autograder"]["sandbox"]`` contains the enforced and missing protections of the
first kernel (see ``autograder.sandbox.kernel``).
"""

import signal

from nbformat.v4 import new_output

KINDS = (
    "cell_timeout",
    "notebook_timeout",
    "kernel_unresponsive",
    "kernel_died",
    "memory_limit",
    "cpu_time_limit",
    "output_truncated",
)

# Names of the error outputs that BoundedExecute adds to a cell.
KERNEL_DIED_ENAME = "KernelDied"
KERNEL_UNRESPONSIVE_ENAME = "KernelUnresponsive"

# torch reports a failed CPU allocation as RuntimeError with this text (torch 2.x, c10/core/impl/alloc_cpu.cpp).
TORCH_ALLOCATION_FAILED = "can't allocate memory"


def cell_label(cell, index):
    """Return the cell's nbgrader grade_id, or its index when it has none."""
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return grade_id if grade_id is not None else index


def record(nb, cell, index, kind, detail):
    """Append one event to ``nb.metadata["autograder"]["limits"]`` and return it."""
    assert kind in KINDS, kind
    event = {"cell": cell_label(cell, index), "kind": kind, "detail": detail}
    nb.metadata.setdefault("autograder", {}).setdefault("limits", []).append(event)
    return event


def describe_signal(number):
    try:
        return f"signal {number} ({signal.Signals(number).name})"
    except ValueError:
        return f"signal {number}"


def classify_exit(status, returncode):
    """Return ``(kind, detail)`` for a kernel that ended during a cell.

    ``status`` is the sandbox launcher's status (``autograder.sandbox.kernel.read_sandbox_status``),
    empty for a kernel without the launcher. ``returncode`` is the kernel process's return code as
    subprocess reports it (negative for a signal), or None when unknown.
    """
    number = status.get("signal")
    code = status.get("exit_code")
    if number is None and code is None and returncode is not None:
        if returncode < 0:
            number = -returncode
        else:
            code = returncode

    if status.get("oom_kills"):
        reason = "killed by the out-of-memory killer at the memory cgroup limit"
        if number is not None:
            reason += f", {describe_signal(number)}"
        return "memory_limit", reason
    if number == signal.SIGXCPU:
        return "cpu_time_limit", f"CPU time limit reached, {describe_signal(number)}"
    if number is not None:
        return "kernel_died", describe_signal(number)
    if code is not None:
        return "kernel_died", f"exit code {code}"
    return "kernel_died", "exit status unknown"


def kernel_died_output(kind, detail):
    """Return the error output added to the cell during which the kernel ended."""
    reason_ko = {
        "memory_limit": "메모리 제한을 넘어 커널이 강제 종료되었습니다",
        "cpu_time_limit": "CPU 시간 제한을 넘어 커널이 종료되었습니다",
    }.get(kind, "커널이 종료되었습니다")
    reason_en = {
        "memory_limit": "The kernel was killed for exceeding the memory limit",
        "cpu_time_limit": "The kernel was ended for exceeding the CPU time limit",
    }.get(kind, "The kernel died")
    text = (
        f"{reason_ko} ({detail}). 이 셀까지 만든 변수는 사라졌고, 커널을 다시 시작해 나머지 셀을 실행합니다. / "
        f"{reason_en} ({detail}). Variables defined so far are lost; the kernel was restarted "
        "to run the remaining cells."
    )
    return new_output("error", ename=KERNEL_DIED_ENAME, evalue=text, traceback=[f"{KERNEL_DIED_ENAME}: {text}"])


def kernel_unresponsive_output(timeout):
    text = (
        f"셀이 {timeout}초 제한을 넘었고, 중단 요청(SIGINT)에도 커널이 응답하지 않아 커널을 다시 시작했습니다. "
        "이 셀까지 만든 변수는 사라졌습니다. / "
        f"The cell exceeded its {timeout} s limit and the kernel did not respond to the interrupt (SIGINT), "
        "so the kernel was restarted. Variables defined so far are lost."
    )
    return new_output(
        "error", ename=KERNEL_UNRESPONSIVE_ENAME, evalue=text, traceback=[f"{KERNEL_UNRESPONSIVE_ENAME}: {text}"]
    )


def truncation_note(max_chars):
    return new_output(
        "stream",
        name="stderr",
        text=(
            f"\n[출력이 너무 많아 {max_chars:,}자 이후는 잘렸습니다 / "
            f"output truncated after {max_chars:,} characters]\n"
        ),
    )


def is_memory_error(output):
    """Return whether an error output reports a failed allocation."""
    if output.get("output_type") != "error":
        return False
    if output.get("ename") == "MemoryError":
        return True
    return output.get("ename") == "RuntimeError" and TORCH_ALLOCATION_FAILED in str(output.get("evalue", ""))


def output_size(content):
    """Return the number of characters of an output message's content that a notebook would store."""
    if "text" in content:
        return len(content["text"])
    size = 0
    for value in (content.get("data") or {}).values():
        size += len(value) if isinstance(value, str) else len(str(value))
    for line in content.get("traceback") or ():
        size += len(line)
    return size
