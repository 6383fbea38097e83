"""Run a command in a sandbox: namespaces, a fresh uid, a scratch working directory and limits.

``run_sandboxed`` is the entry point. With root and a working ``unshare`` (util-linux) it runs the
command through ``init.py`` in new network, mount, pid and IPC namespaces, as a uid and gid of its own,
with only the listed paths visible. Without them it runs the command directly with the rlimits, in
a scratch copy of the working directory, and logs one warning that names the protections that are off.
As root without namespaces, the command still gets a uid of its own when that uid can read every
path the command needs.
"""

import json
import logging
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass

from autograder.sandbox.cgroups import SandboxCgroups
from autograder.sandbox.limits import SandboxLimits, apply_rlimits

log = logging.getLogger(__name__)

INIT_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "init.py")

# Sandbox uids and gids are UID_BASE + the launcher's pid. Pids of live processes are unique, so
# sandboxes that run at the same time never share a uid: RLIMIT_NPROC counts per uid, and a
# process may signal only processes of its own uid. No /etc/passwd entry is needed.
UID_BASE = 2_000_000_000

# Read-only system directories. Merged-/usr links such as /bin -> usr/bin are recreated as links.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/sys")

PROTECTION_NAMES = {
    "network": ("네트워크 차단", "no network"),
    "filesystem": ("파일 시스템 격리", "file system isolation"),
    "pid_namespace": ("프로세스 격리", "process isolation"),
    "user": ("별도 사용자", "separate user"),
    "memory_cgroup": ("메모리 cgroup", "memory cgroup"),
    "pids_cgroup": ("프로세스 수 cgroup", "pids cgroup"),
    "rlimits": ("rlimit 제한", "rlimits"),
    "scratch_copy": ("작업 폴더 사본", "scratch copy of the working directory"),
}


@dataclass
class SandboxResult:
    """Outcome of ``run_sandboxed``: how the command ended and which protections were enforced."""

    enforced: list
    missing: list
    exit_code: int = None
    signal: int = None
    oom_kills: int = None
    memory_peak_bytes: int = None
    error: str = None

    def as_dict(self):
        return {key: value for key, value in self.__dict__.items() if value is not None}


@dataclass
class _Support:
    namespaces: bool
    reason: str


_support_cache = None

# AUTOGRADER_SANDBOX_NAMESPACES=off skips the namespaces even where they work, as on a machine without root.
NAMESPACES_VARIABLE = "AUTOGRADER_SANDBOX_NAMESPACES"


def probe_support():
    """Return whether this process can create the sandbox's namespaces, with the reason when not."""
    global _support_cache
    if _support_cache is not None:
        return _support_cache
    unshare = shutil.which("unshare")
    if os.environ.get(NAMESPACES_VARIABLE) == "off":
        _support_cache = _Support(False, f"{NAMESPACES_VARIABLE}=off")
    elif os.geteuid() != 0:
        _support_cache = _Support(False, "not running as root")
    elif unshare is None:
        _support_cache = _Support(False, "the unshare command (util-linux) was not found")
    else:
        probe = subprocess.run(
            [unshare, "--net", "--mount", "--pid", "--ipc", "--fork", "true"], capture_output=True, text=True
        )
        if probe.returncode == 0:
            _support_cache = _Support(True, "")
        else:
            _support_cache = _Support(False, f"unshare failed: {probe.stderr.strip() or probe.returncode}")
    return _support_cache


def sandbox_uid():
    return UID_BASE + os.getpid()


def make_private_dir(kind):
    """Create a 0700 directory ``autograder-<kind>-<pid>-*`` in the temporary directory.

    First removes those of launchers that no longer run, which a SIGKILL (jupyter_client kills a
    kernel's whole process group) leaves behind.
    """
    prefix = f"autograder-{kind}-"
    temporary = tempfile.gettempdir()
    for entry in os.listdir(temporary):
        pid = entry[len(prefix):].split("-", 1)[0]
        if entry.startswith(prefix) and pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(temporary, entry), ignore_errors=True)
    return tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-")


def python_paths():
    """Return the paths that the running Python needs: the venv, the base install and their real paths."""
    paths = []
    for path in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
        for candidate in (os.path.abspath(path), os.path.realpath(path)):
            if candidate not in paths:
                paths.append(candidate)
    return paths


def _is_within(path, parent):
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def _visible_paths(paths):
    """Return absolute paths of ``paths`` that exist and are not already inside a system path."""
    result = []
    for path in paths:
        for candidate in (os.path.abspath(path), os.path.realpath(path)):
            if not os.path.exists(candidate) or candidate in result:
                continue
            if any(_is_within(candidate, system) for system in SYSTEM_PATHS if not os.path.islink(system)):
                continue
            result.append(candidate)
    return result


def describe(names):
    """Return the Korean and the English names of protections, each joined by commas."""
    korean = ", ".join(PROTECTION_NAMES[name][0] for name in names)
    english = ", ".join(PROTECTION_NAMES[name][1] for name in names)
    return korean, english


def run_sandboxed(
    argv,
    *,
    cwd=None,
    copy_cwd=True,
    cwd_ignore=(),
    readable=(),
    writable=(),
    copies=(),
    limits=None,
    env=None,
    network=False,
    uid=None,
    on_start=None,
    stdout=None,
    stderr=None,
):
    """Run ``argv`` in a sandbox, wait for it and return a ``SandboxResult``.

    ``cwd`` becomes a scratch copy: with namespaces a size-limited tmpfs at the same absolute
    path, else a temporary directory (then the command sees another path). The copy is discarded
    afterwards, so the real ``cwd`` never changes. ``copy_cwd=False`` starts with it empty, and
    names that match a glob pattern of ``cwd_ignore`` are not copied.
    ``readable`` paths are bound read-only and ``writable`` paths read-write, each at its own
    absolute path. The Python install that runs this function is always readable.
    ``network=True`` keeps the host network (used when the caller must reach the command over TCP).
    ``uid`` is the sandbox uid and gid (default ``UID_BASE`` + this pid). ``writable`` paths are
    not chowned, so the caller makes them writable for that uid. ``copies`` lists
    ``(source, target)`` pairs: each source is copied as root to ``target`` under ``/tmp`` and given
    to the sandbox uid, for files that the uid could not read where they are. Without namespaces,
    ``copies`` are ignored and the command reads the sources where they are. There, as root, the
    command runs as ``uid`` when that uid can read ``readable``, the absolute paths in ``argv`` and
    ``PYTHONPATH`` (see ``unreadable_path``), and as root otherwise.
    ``on_start(result)`` is called once the protections are known and before the command runs.
    ``stdout`` and ``stderr`` go to ``subprocess.Popen`` (default: this process's own).

    SIGINT is ignored in this process and reaches the command through the process group, as
    jupyter_client sends it. SIGTERM is passed on to the command.
    """
    limits = limits or SandboxLimits.from_environment()
    env = dict(os.environ if env is None else env)
    support = probe_support()
    if support.namespaces:
        return _run_in_namespaces(
            argv, cwd, copy_cwd, cwd_ignore, readable, writable, copies, limits, env, network, uid, on_start,
            {"stdout": stdout, "stderr": stderr},
        )
    return _run_with_rlimits(
        argv, cwd, copy_cwd, cwd_ignore, readable, limits, env, uid, support.reason, on_start,
        {"stdout": stdout, "stderr": stderr},
    )


def _warn_missing(missing, reason):
    if missing:
        korean, english = describe(missing)
        log.warning(
            "샌드박스 보호 일부가 꺼졌습니다: %s (%s). 나머지 보호는 적용합니다. / "
            "Some sandbox protections are off: %s (%s). The other protections are enforced.",
            korean,
            reason,
            english,
            reason,
        )


def _run_in_namespaces(
    argv, cwd, copy_cwd, cwd_ignore, readable, writable, copies, limits, env, network, uid, on_start, streams
):
    uid = sandbox_uid() if uid is None else uid
    cgroups = SandboxCgroups(limits.memory_bytes, limits.processes)
    workdir = make_private_dir("sandbox")
    enforced = ["filesystem", "pid_namespace", "user", "rlimits"]
    if cwd:
        enforced.append("scratch_copy")
    if not network:
        enforced.append("network")
    missing = [name for name in ("network",) if network]
    for controller in ("memory", "pids"):
        if (limits.memory_bytes if controller == "memory" else limits.processes):
            (enforced if controller in cgroups.paths else missing).append(f"{controller}_cgroup")
    reason = "no writable cgroup with the memory or pids controller" if any(name.endswith("cgroup") for name in missing) else ""
    if network:
        reason = (reason + "; " if reason else "") + "the caller keeps the host network, as for a kernel with a TCP connection file"
    result = SandboxResult(enforced=enforced, missing=missing)
    _warn_missing(missing, reason)

    try:
        os.mkdir(os.path.join(workdir, "root"))
        spec = {
            "root": os.path.join(workdir, "root"),
            "status_file": os.path.join(workdir, "status.json"),
            "system_paths": list(SYSTEM_PATHS),
            "readable": _visible_paths(list(readable) + python_paths()),
            "writable": [os.path.abspath(path) for path in writable],
            "copies": [[os.path.abspath(source), target] for source, target in copies],
            "cwd": os.path.abspath(cwd) if cwd else None,
            "copy_cwd": copy_cwd,
            "cwd_ignore": list(cwd_ignore),
            "uid": uid,
            "gid": uid,
            "rlimits": limits.rlimits(),
            "scratch_bytes": limits.scratch_bytes,
            # The copies go to /tmp, which grows by their size.
            "tmp_bytes": limits.tmp_bytes + sum(_size(source) for source, _ in copies),
            "shm_bytes": limits.shm_bytes,
            "network_namespace": not network,
            "argv": list(argv),
            "env": env,
        }
        spec_path = os.path.join(workdir, "spec.json")
        with open(spec_path, "w", encoding="utf-8") as handle:
            json.dump(spec, handle)

        unshare = [shutil.which("unshare"), "--mount", "--pid", "--ipc", "--fork", "--kill-child", "--propagation", "private"]
        if not network:
            unshare.insert(1, "--net")
        command = unshare + [sys.executable, "-I", "-S", INIT_SCRIPT, spec_path]
        if on_start:
            on_start(result)
        # unshare --fork ignores SIGTERM while it waits (util-linux 2.38), so SIGTERM kills it, and
        # --kill-child then kills process 1 of the namespace and with it every process inside.
        path_only = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        returncode = _wait(command, preexec=cgroups.join, env=path_only, streams=streams, kill_on_term=True)

        status = _read_json(spec["status_file"])
        if not status:
            status = {"error": f"the sandbox ended without a status (unshare returned {returncode})"}
        result.exit_code = status.get("exit_code")
        result.signal = status.get("signal")
        result.error = status.get("error")
        result.oom_kills = cgroups.oom_kills()
        result.memory_peak_bytes = cgroups.memory_peak()
        return result
    finally:
        cgroups.remove()
        shutil.rmtree(workdir, ignore_errors=True)


def _run_with_rlimits(argv, cwd, copy_cwd, cwd_ignore, readable, limits, env, uid, reason, on_start, streams):
    cgroups = SandboxCgroups(limits.memory_bytes, limits.processes) if os.geteuid() == 0 else SandboxCgroups(0, 0)
    uid = sandbox_uid() if uid is None else uid
    hidden = unreadable_path(_needed_paths(argv, readable, env), uid) if os.geteuid() == 0 else None
    switch_user = os.geteuid() == 0 and hidden is None
    enforced = ["rlimits"]
    missing = ["network", "filesystem", "pid_namespace"]
    (enforced if switch_user else missing).append("user")
    if hidden is not None:
        reason = f"{reason}; the sandbox uid cannot read {hidden}, so the command runs as root"
    for controller in ("memory", "pids"):
        (enforced if controller in cgroups.paths else missing).append(f"{controller}_cgroup")
    scratch = None
    if cwd:
        scratch = make_private_dir("scratch")
        if copy_cwd:
            ignore = shutil.ignore_patterns(*cwd_ignore)
            shutil.copytree(cwd, scratch, dirs_exist_ok=True, symlinks=True, ignore=ignore)
        if switch_user:
            chown_tree(scratch, uid)
        enforced.append("scratch_copy")
    result = SandboxResult(enforced=enforced, missing=missing)
    _warn_missing(missing, reason)

    rlimits = limits.rlimits()

    def prepare_child():
        cgroups.join()
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        apply_rlimits(rlimits)
        if switch_user:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)

    try:
        if on_start:
            on_start(result)
        status = _wait(argv, preexec=prepare_child, env=env, cwd=scratch, streams=streams)
        if status < 0:
            result.signal = -status
        else:
            result.exit_code = status
        result.oom_kills = cgroups.oom_kills()
        result.memory_peak_bytes = cgroups.memory_peak()
        return result
    finally:
        cgroups.remove()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _needed_paths(argv, readable, env):
    """Return the paths that ``argv`` reads: ``readable``, its absolute arguments, ``PYTHONPATH`` and,
    when it runs this Python, the Python install."""
    arguments = [argument for argument in argv if os.path.isabs(argument) and os.path.exists(argument)]
    python_path = [entry for entry in env.get("PYTHONPATH", "").split(os.pathsep) if entry]
    paths = list(readable) + arguments + python_path
    install = python_paths()
    if any(_is_within(os.path.realpath(argument), prefix) for argument in arguments for prefix in install):
        paths += install
    return paths


def unreadable_path(paths, uid):
    """Return the first of ``paths`` (or a folder above it) that ``uid``, with the gid of the same number
    and no other groups, cannot read, or None. Only permission bits count, not ACLs, and a folder's
    contents are not checked."""
    for path in paths:
        real = os.path.realpath(path)
        if not os.path.exists(real):
            continue
        folder = os.path.dirname(real)
        while folder != os.path.dirname(folder):
            if not _allows(os.stat(folder), uid, stat.S_IXOTH):
                return folder
            folder = os.path.dirname(folder)
        status = os.stat(real)
        if not _allows(status, uid, stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(status.st_mode) else 0)):
            return real
    return None


def _allows(status, uid, other_bits):
    """Return True when the mode grants ``other_bits`` (given as the bits for others) to ``uid``."""
    if status.st_uid == uid:
        bits = other_bits << 6
    elif status.st_gid == uid:
        bits = other_bits << 3
    else:
        bits = other_bits
    return status.st_mode & bits == bits


def chown_tree(path, uid):
    """Give ``path`` and everything below it to ``uid`` (and the group of the same number)."""
    os.chown(path, uid, uid)
    for directory, subdirectories, files in os.walk(path):
        for name in subdirectories + files:
            os.lchown(os.path.join(directory, name), uid, uid)


def _wait(command, preexec, env, cwd=None, streams=None, kill_on_term=False):
    """Start ``command`` and wait for it, and return its returncode.

    In the main thread, SIGINT is ignored meanwhile, and SIGTERM is passed on to ``command``, or
    becomes SIGKILL with ``kill_on_term``. Python lets only the main thread set signal handlers,
    so other threads leave them as they are.
    """
    if threading.current_thread() is not threading.main_thread():
        return subprocess.Popen(command, preexec_fn=preexec, env=env, cwd=cwd, **(streams or {})).wait()

    previous_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    process = subprocess.Popen(command, preexec_fn=preexec, env=env, cwd=cwd, **(streams or {}))

    def forward(signum, frame):
        if kill_on_term:
            process.kill()
        else:
            process.send_signal(signum)

    previous_term = signal.signal(signal.SIGTERM, forward)
    try:
        return process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def _size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for directory, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(directory, name)) for name in files)
    return total


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}
