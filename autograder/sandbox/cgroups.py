"""Per-sandbox memory and pids cgroups, nested under this process's own cgroups.

cgroup v1 is used where ``/sys/fs/cgroup/<controller>`` exists. On a cgroup v2-only machine the
controllers must be enabled in the parent's ``cgroup.subtree_control``. The kernel rejects that
with EBUSY while the parent contains processes, so there the limits apply only below a delegated,
empty parent, such as a systemd unit with ``Delegate=yes``.

Each sandbox gets ``autograder-sandbox-<launcher pid>`` below the cgroup that the launcher is in,
so the limits of any parent (a container, a CI job) still apply. The launcher removes the
directories when the sandbox exits. A launcher that is killed leaves them behind, and the next
launcher in the same parent removes the empty ones whose launcher no longer runs.
"""

import logging
import os
import re

log = logging.getLogger(__name__)

CGROUP_V1_ROOT = "/sys/fs/cgroup"
CGROUP_V2_ROOT = "/sys/fs/cgroup"
NAME_PREFIX = "autograder-sandbox-"


def _own_cgroup(controller):
    """Return the path of this process's cgroup of ``controller`` below its v1 hierarchy, or None."""
    try:
        with open("/proc/self/cgroup", encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        # The v2 line is "0::<path>", with an empty controller list.
        if controller in controllers.split(",") and (controller or not controllers):
            return path
    return None


def _v2_parent():
    """Return this process's cgroup directory on a cgroup v2-only machine, or None."""
    if not os.path.exists(os.path.join(CGROUP_V2_ROOT, "cgroup.controllers")):
        return None
    own = _own_cgroup("")
    return None if own is None else os.path.join(CGROUP_V2_ROOT, own.lstrip("/"))


def _read_words(path, name):
    try:
        with open(os.path.join(path, name), encoding="utf-8") as handle:
            return handle.read().split()
    except OSError:
        return []


def _hierarchy(controller):
    mount_point = os.path.join(CGROUP_V1_ROOT, controller)
    own = _own_cgroup(controller)
    if own is None or not os.path.isdir(mount_point):
        return None
    return os.path.join(mount_point, own.lstrip("/"))


class SandboxCgroups:
    """Memory and pids cgroups of one sandbox; ``paths`` lists the ones that could be created."""

    def __init__(self, memory_bytes, processes):
        self.paths = {}
        self.version = 1
        name = f"{NAME_PREFIX}{os.getpid()}"
        limits = {"memory": memory_bytes, "pids": processes}
        if _v2_parent() is not None:
            self._create_v2(name, limits)
            return
        for controller, limit in limits.items():
            if not limit:
                continue
            parent = _hierarchy(controller)
            if parent is None or not os.access(parent, os.W_OK):
                continue
            _remove_stale(parent)
            path = os.path.join(parent, name)
            try:
                os.makedirs(path, exist_ok=True)
                if controller == "memory":
                    _write(path, "memory.limit_in_bytes", limit)
                    # Without swap accounting this file is absent; then there is no swap limit.
                    if os.path.exists(os.path.join(path, "memory.memsw.limit_in_bytes")):
                        _write(path, "memory.memsw.limit_in_bytes", limit)
                else:
                    _write(path, "pids.max", limit)
            except OSError as error:
                log.debug("cgroup %s unavailable: %s", path, error)
                _rmdir(path)
                continue
            self.paths[controller] = path

    def _create_v2(self, name, limits):
        # NOTE: written from the cgroup v2 documentation and not yet run on a v2-only machine.
        self.version = 2
        parent = _v2_parent()
        needed = [controller for controller, limit in limits.items() if limit]
        if not needed or not os.access(parent, os.W_OK):
            return
        enabled = _read_words(parent, "cgroup.subtree_control")
        absent = [controller for controller in needed if controller not in enabled]
        if absent:
            try:
                _write(parent, "cgroup.subtree_control", " ".join(f"+{controller}" for controller in absent))
            except OSError as error:
                log.debug("cannot enable %s in %s: %s", absent, parent, error)
            enabled = _read_words(parent, "cgroup.subtree_control")
        usable = [controller for controller in needed if controller in enabled]
        if not usable:
            return

        _remove_stale(parent)
        path = os.path.join(parent, name)
        try:
            os.makedirs(path, exist_ok=True)
            if "memory" in usable:
                _write(path, "memory.max", limits["memory"])
                if os.path.exists(os.path.join(path, "memory.swap.max")):
                    _write(path, "memory.swap.max", 0)
            if "pids" in usable:
                _write(path, "pids.max", limits["pids"])
        except OSError as error:
            log.debug("cgroup %s unavailable: %s", path, error)
            _rmdir(path)
            return
        for controller in usable:
            self.paths[controller] = path

    def join(self):
        """Move the calling process into every cgroup of ``paths``. Safe between fork and exec."""
        for path in set(self.paths.values()):
            with open(os.path.join(path, "cgroup.procs"), "w") as handle:
                handle.write(str(os.getpid()))

    def oom_kills(self):
        """Return how many processes the OOM killer killed in the memory cgroup, or None if unknown."""
        path = self.paths.get("memory")
        if path is None:
            return None
        events = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            with open(os.path.join(path, events), encoding="utf-8") as handle:
                match = re.search(r"^oom_kill (\d+)$", handle.read(), re.MULTILINE)
        except OSError:
            return None
        if match:
            return int(match.group(1))
        return None

    def memory_peak(self):
        """Return the peak memory use of the memory cgroup in bytes, or None if unknown."""
        path = self.paths.get("memory")
        if path is None:
            return None
        peak = "memory.max_usage_in_bytes" if self.version == 1 else "memory.peak"
        try:
            with open(os.path.join(path, peak), encoding="utf-8") as handle:
                return int(handle.read())
        except (OSError, ValueError):
            return None

    def remove(self):
        for path in set(self.paths.values()):
            _rmdir(path)
        self.paths = {}


def _write(path, name, value):
    with open(os.path.join(path, name), "w") as handle:
        handle.write(str(value))


def _rmdir(path):
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("Could not remove cgroup %s: %s", path, error)


def _remove_stale(parent):
    """Remove empty sandbox cgroups in ``parent`` whose launcher process no longer exists."""
    try:
        entries = os.listdir(parent)
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(NAME_PREFIX):
            continue
        pid = entry[len(NAME_PREFIX):]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.rmdir(os.path.join(parent, entry))
            except OSError:
                pass  # still has processes, or removed by another launcher
