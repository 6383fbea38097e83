"""Classifying how a kernel ended, sizing outputs, and reading sandbox limits from the environment."""

import signal

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder import limit_events
from autograder.sandbox.limits import CPU_GRACE_SECONDS, GIB, SandboxLimits


@pytest.mark.parametrize(
    "status, returncode, expected",
    [
        ({"signal": 9, "oom_kills": 1}, None, ("memory_limit", "killed by the out-of-memory killer at the memory cgroup limit, signal 9 (SIGKILL)")),
        ({"signal": int(signal.SIGXCPU), "oom_kills": 0}, None, ("cpu_time_limit", "CPU time limit reached, signal 24 (SIGXCPU)")),
        ({"signal": 9, "oom_kills": 0}, None, ("kernel_died", "signal 9 (SIGKILL)")),
        ({"exit_code": 3}, None, ("kernel_died", "exit code 3")),
        ({}, -15, ("kernel_died", "signal 15 (SIGTERM)")),
        ({}, 2, ("kernel_died", "exit code 2")),
        ({}, None, ("kernel_died", "exit status unknown")),
    ],
)
def test_classify_exit(status, returncode, expected):
    assert limit_events.classify_exit(status, returncode) == expected


def test_record_uses_grade_id_or_index():
    graded = new_code_cell("x = 1")
    graded.metadata["nbgrader"] = {"grade_id": "test_vgg11_layers"}
    plain = new_code_cell("y = 2")
    notebook = new_notebook(cells=[graded, plain])

    limit_events.record(notebook, graded, 0, "cell_timeout", "cell ran longer than 5 s")
    limit_events.record(notebook, plain, 1, "output_truncated", "more than 10 outputs")

    assert notebook.metadata["autograder"]["limits"] == [
        {"cell": "test_vgg11_layers", "kind": "cell_timeout", "detail": "cell ran longer than 5 s"},
        {"cell": 1, "kind": "output_truncated", "detail": "more than 10 outputs"},
    ]


def test_record_rejects_unknown_kind():
    notebook = new_notebook(cells=[new_code_cell("")])
    with pytest.raises(AssertionError):
        limit_events.record(notebook, notebook.cells[0], 0, "disk_full", "")


def test_output_size_counts_text_data_traceback():
    assert limit_events.output_size({"name": "stdout", "text": "abc"}) == 3
    assert limit_events.output_size({"data": {"text/plain": "12", "image/png": "xxxx"}}) == 6
    assert limit_events.output_size({"ename": "E", "evalue": "v", "traceback": ["ab", "cd"]}) == 4


def test_is_memory_error():
    assert limit_events.is_memory_error({"output_type": "error", "ename": "MemoryError", "evalue": ""})
    torch_error = "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 1 bytes."
    assert limit_events.is_memory_error({"output_type": "error", "ename": "RuntimeError", "evalue": torch_error})
    assert not limit_events.is_memory_error({"output_type": "error", "ename": "RuntimeError", "evalue": "shape mismatch"})
    assert not limit_events.is_memory_error({"output_type": "stream", "text": "MemoryError"})


def test_limits_from_environment():
    limits = SandboxLimits.from_environment({"AUTOGRADER_SANDBOX_MEMORY_BYTES": "1024", "AUTOGRADER_SANDBOX_PROCESSES": "0"})
    assert limits.memory_bytes == 1024
    assert limits.processes == 0
    assert limits.address_space_bytes == 16 * GIB

    rlimits = limits.rlimits()
    assert "processes" not in rlimits
    assert rlimits["core_size"] == [0, 0]
    assert rlimits["cpu_seconds"] == [limits.cpu_seconds, limits.cpu_seconds + CPU_GRACE_SECONDS]


@pytest.mark.parametrize("value", ["-1", "lots", "1.5"])
def test_limits_reject_invalid_value(value):
    with pytest.raises(ValueError, match="AUTOGRADER_SANDBOX_OPEN_FILES"):
        SandboxLimits.from_environment({"AUTOGRADER_SANDBOX_OPEN_FILES": value})
