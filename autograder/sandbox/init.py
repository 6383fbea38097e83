"""Process 1 of a sandbox: build the file system view, drop privileges, run the command, reap.

``launcher.run_sandboxed`` starts this script as root through
``unshare --net --mount --pid --ipc --fork --kill-child``, as ``python -I -S init.py SPEC``, so it runs
with the standard library only and ignores PYTHONPATH and the user's site-packages. SPEC is a JSON
file written by the launcher (see ``launcher._build_spec`` for its keys).

Steps:
1. Mount a tmpfs as the new root and bind the allowed paths into it at their own absolute paths.
   System directories and ``readable`` paths are read-only and ``writable`` paths read-write. A
   fresh ``/proc``, a minimal ``/dev`` and a private ``/tmp`` with each of ``copies`` are added.
   The working directory becomes a size-limited tmpfs with a copy of the real working directory.
   Then ``pivot_root`` into it.
2. Bring up the loopback interface of the new network namespace.
3. Fork the command: it gets the resource limits, the sandbox uid and gid, no supplementary groups,
   ``PR_SET_NO_NEW_PRIVS`` and ``SIGKILL`` when this process dies, then ``execve``.
4. Reap every process until the command exits, write its exit status to the status file, and exit.
   The kernel kills the rest of the pid namespace when process 1 exits.
"""

import ctypes
import errno
import fcntl
import json
import os
import platform
import resource
import shutil
import signal
import socket
import struct
import sys

MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
PR_SET_PDEATHSIG = 1
PR_SET_NO_NEW_PRIVS = 38

# Syscall numbers of pivot_root, from the kernel's unistd headers of each architecture.
PIVOT_ROOT_SYSCALL = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

RLIMIT_NAMES = {
    "address_space": resource.RLIMIT_AS,
    "processes": resource.RLIMIT_NPROC,
    "file_size": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "cpu_seconds": resource.RLIMIT_CPU,
    "core_size": resource.RLIMIT_CORE,
}

# Device nodes that programs expect. Each is bound from the host's /dev.
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")

_libc = ctypes.CDLL(None, use_errno=True)


def _check(result, what):
    if result != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"{what}: {os.strerror(error)}")


def mount(source, target, fstype, flags=0, data=None):
    _check(
        _libc.mount(
            source.encode() if source else None,
            target.encode(),
            fstype.encode() if fstype else None,
            ctypes.c_ulong(flags),
            data.encode() if data else None,
        ),
        f"mount {source} on {target}",
    )


def bind(source, target, read_only):
    """Bind ``source`` on ``target``, then remount it nosuid and nodev, and read-only when asked."""
    mount(source, target, None, MS_BIND | MS_REC)
    flags = MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | (MS_RDONLY if read_only else 0)
    mount(None, target, None, flags)


def make_mount_point(new_root, path, like):
    """Create ``new_root + path`` as a directory or an empty file, whichever ``like`` is."""
    target = new_root + path
    if os.path.isdir(like):
        os.makedirs(target, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        if not os.path.exists(target):
            open(target, "w").close()
    return target


def build_root(spec):
    new_root = spec["root"]
    mount("tmpfs", new_root, "tmpfs", MS_NOSUID | MS_NODEV, "mode=755,size=16m")

    # Merged-/usr systems have links such as /bin -> usr/bin, which are recreated instead of bound.
    for path in spec["system_paths"]:
        if os.path.islink(path):
            os.symlink(os.readlink(path), new_root + path)
        elif os.path.exists(path):
            bind(path, make_mount_point(new_root, path, path), read_only=True)

    os.makedirs(new_root + "/proc")
    mount("proc", new_root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)

    os.makedirs(new_root + "/dev")
    mount("tmpfs", new_root + "/dev", "tmpfs", MS_NOSUID, "mode=755,size=1m")
    for name in DEVICES:
        if os.path.exists("/dev/" + name):
            target = make_mount_point(new_root, "/dev/" + name, "/dev/" + name)
            mount("/dev/" + name, target, None, MS_BIND)
    for name, link in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                       ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(link, f"{new_root}/dev/{name}")
    os.makedirs(new_root + "/dev/shm")
    mount("tmpfs", new_root + "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={spec['shm_bytes']}")

    os.makedirs(new_root + "/tmp", exist_ok=True)
    mount("tmpfs", new_root + "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={spec['tmp_bytes']}")

    for source, target in spec.get("copies", ()):
        copy_in(source, new_root + target, spec["uid"])

    # Shorter paths first, so that a path nested in another is mounted on top of it.
    for path in sorted(spec["readable"], key=len):
        if os.path.exists(path):
            bind(path, make_mount_point(new_root, path, path), read_only=True)
    for path in sorted(spec["writable"], key=len):
        bind(path, make_mount_point(new_root, path, path), read_only=False)

    if spec.get("cwd"):
        copy_working_directory(spec, new_root)

    put_old = new_root + "/.old-root"
    os.makedirs(put_old)
    pivot_root(new_root, put_old)
    os.chdir("/")
    _check(_libc.umount2(b"/.old-root", MNT_DETACH), "umount old root")
    os.rmdir("/.old-root")
    mount(None, "/", None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV)


def copy_in(source, target, uid):
    """Copy ``source`` to ``target`` (a path in the new root's /tmp) and give it to ``uid``."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.isdir(source):
        shutil.copytree(source, target, symlinks=True)
    else:
        shutil.copy2(source, target)
    chown_tree(target, uid)


def chown_tree(path, uid):
    os.lchown(path, uid, uid)
    for directory, subdirectories, files in os.walk(path):
        for name in subdirectories + files:
            os.lchown(os.path.join(directory, name), uid, uid)


def copy_working_directory(spec, new_root):
    """Mount a tmpfs at the working directory's own path and copy the real directory into it.

    Names that match a glob pattern of ``spec["cwd_ignore"]`` are not copied.
    """
    cwd = spec["cwd"]
    target = new_root + cwd
    os.makedirs(target, exist_ok=True)
    mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, f"mode=700,size={spec['scratch_bytes']}")
    if spec.get("copy_cwd") and os.path.isdir(cwd):
        try:
            ignore = shutil.ignore_patterns(*spec.get("cwd_ignore", ()))
            shutil.copytree(cwd, target, dirs_exist_ok=True, symlinks=True, ignore=ignore)
        except (OSError, shutil.Error) as error:
            # A submission folder larger than the scratch tmpfs is copied in part.
            print(f"[sandbox] copying {cwd} into the scratch directory failed: {error}", file=sys.stderr)
    chown_tree(target, spec["uid"])


def pivot_root(new_root, put_old):
    number = PIVOT_ROOT_SYSCALL.get(platform.machine())
    if number is None:
        raise OSError(errno.ENOSYS, f"pivot_root syscall number unknown for {platform.machine()}")
    _check(_libc.syscall(number, new_root.encode(), put_old.encode()), "pivot_root")


def bring_up_loopback():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        request = struct.pack("16sH14x", b"lo", 0)
        flags = struct.unpack("16sH14x", fcntl.ioctl(probe.fileno(), SIOCGIFFLAGS, request))[1]
        fcntl.ioctl(probe.fileno(), SIOCSIFFLAGS, struct.pack("16sH14x", b"lo", flags | IFF_UP))


def exec_command(spec):
    """Become the sandbox user with the limits of ``spec`` and run its command. Never returns."""
    try:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _check(_libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0), "prctl PDEATHSIG")
        for name, (soft, hard) in spec["rlimits"].items():
            resource.setrlimit(RLIMIT_NAMES[name], (soft, hard))
        os.setgroups([])
        os.setresgid(spec["gid"], spec["gid"], spec["gid"])
        os.setresuid(spec["uid"], spec["uid"], spec["uid"])
        _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl NO_NEW_PRIVS")
        os.chdir(spec.get("cwd") or "/tmp")
        os.umask(0o022)
        os.execve(spec["argv"][0], spec["argv"], spec["env"])
    except BaseException as error:  # noqa: BLE001 (report any failure before exec, then exit)
        print(f"[sandbox] starting {spec['argv'][0]} failed: {error!r}", file=sys.stderr)
    os._exit(127)


def supervise(child):
    """Reap every process of the namespace; return the wait status of ``child`` when it exits."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return None
        except InterruptedError:
            continue
        if pid == child:
            return status


def main():
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    status_file = open(spec["status_file"], "w", encoding="utf-8")

    # SIGINT goes to the whole process group; only the command acts on it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        build_root(spec)
        if spec.get("network_namespace"):
            bring_up_loopback()
    except OSError as error:
        json.dump({"error": f"sandbox set-up failed: {error}"}, status_file)
        status_file.close()
        print(f"[sandbox] set-up failed: {error}", file=sys.stderr)
        sys.exit(126)

    child = os.fork()
    if child == 0:
        status_file.close()
        exec_command(spec)

    def forward_signal(signum, frame):
        try:
            os.kill(child, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward_signal)

    status = supervise(child)
    result = {}
    if status is not None:
        if os.WIFSIGNALED(status):
            result["signal"] = os.WTERMSIG(status)
        else:
            result["exit_code"] = os.waitstatus_to_exitcode(status)
    json.dump(result, status_file)
    status_file.close()
    if "signal" in result:
        sys.exit(128 + result["signal"])
    sys.exit(result.get("exit_code", 1) & 0xFF)


if __name__ == "__main__":
    main()
