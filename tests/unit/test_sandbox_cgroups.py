"""The cgroup v2 branch of ``SandboxCgroups``, on a directory tree in place of /sys/fs/cgroup.

A plain directory keeps the files that the code writes, so these tests check which limits are
written where, not how the kernel applies them.
"""

import os

from autograder.sandbox import cgroups


def _fake_v2_root(tmp_path, monkeypatch, subtree_control):
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids", encoding="utf-8")
    (tmp_path / "cgroup.subtree_control").write_text(subtree_control, encoding="utf-8")
    monkeypatch.setattr(cgroups, "CGROUP_V2_ROOT", str(tmp_path))
    monkeypatch.setattr(cgroups, "_own_cgroup", lambda controller: "/")
    return tmp_path / f"{cgroups.NAME_PREFIX}{os.getpid()}"


def test_cgroup_v2_limits_written(tmp_path, monkeypatch):
    path = _fake_v2_root(tmp_path, monkeypatch, "memory pids")
    created = cgroups.SandboxCgroups(1024, 64)

    assert created.version == 2
    assert created.paths == {"memory": str(path), "pids": str(path)}
    assert (path / "memory.max").read_text(encoding="utf-8") == "1024"
    assert (path / "pids.max").read_text(encoding="utf-8") == "64"

    (path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 2\n", encoding="utf-8")
    (path / "memory.peak").write_text("4096\n", encoding="utf-8")
    assert created.oom_kills() == 2
    assert created.memory_peak() == 4096


def test_cgroup_v2_without_controllers(tmp_path, monkeypatch):
    # A plain file accepts the "+memory +pids" write, so the parent looks as if the kernel
    # had rejected it: the controllers stay absent from the file that is read back.
    _fake_v2_root(tmp_path, monkeypatch, "cpu")
    monkeypatch.setattr(cgroups, "_write", _reject_subtree_control(cgroups._write))
    created = cgroups.SandboxCgroups(1024, 64)
    assert created.paths == {}


def _reject_subtree_control(write):
    def reject(path, name, value):
        if name == "cgroup.subtree_control":
            raise OSError(16, "Device or resource busy")
        write(path, name, value)

    return reject
