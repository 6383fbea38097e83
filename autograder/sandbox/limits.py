"""Resource limits of a sandboxed process and the environment variables that override them."""

import os
import resource
from dataclasses import dataclass, fields

MIB = 1024 * 1024
GIB = 1024 * MIB

# Seconds between the soft RLIMIT_CPU (SIGXCPU) and the hard one (SIGKILL).
CPU_GRACE_SECONDS = 5

# Prefix of the environment variables that override a field, e.g. AUTOGRADER_SANDBOX_MEMORY_BYTES.
ENV_PREFIX = "AUTOGRADER_SANDBOX_"


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for one sandboxed process tree. A value of 0 leaves that limit unset.

    Sizes are in bytes, times in seconds. The memory defaults come from the solution notebook run
    with CI=1 and NBGRADER_EXECUTION=autograde (torch 2.14.1+cu130, x86_64, CPU only): importing
    torch maps about 3.5 GB of virtual memory with 0.7 GB resident, and the kernel's peak over the
    whole notebook was 7.7 GB virtual (VmPeak) and 3.6 GB resident (VmHWM).
    """

    # RLIMIT_AS of each process. Exceeding it makes an allocation fail (MemoryError in Python,
    # RuntimeError in torch) instead of killing the kernel.
    address_space_bytes: int = 16 * GIB
    # Memory cgroup limit of the whole process tree, resident memory and page cache. Exceeding it
    # makes the kernel's OOM killer kill a process of the tree, usually the Jupyter kernel.
    memory_bytes: int = 6 * GIB
    # RLIMIT_NPROC of the sandbox uid (processes and threads), and the pids cgroup limit.
    processes: int = 256
    # RLIMIT_FSIZE: the largest file that a process may write.
    file_size_bytes: int = 1 * GIB
    # RLIMIT_NOFILE: open file descriptors per process.
    open_files: int = 1024
    # RLIMIT_CPU of each process. At this soft limit the kernel sends SIGXCPU, which ends the
    # process; the hard limit, CPU_GRACE_SECONDS later, sends SIGKILL.
    cpu_seconds: int = 3600
    # Size of the tmpfs that contains the copy of the working directory.
    scratch_bytes: int = 1 * GIB
    # Sizes of the private /tmp and /dev/shm.
    tmp_bytes: int = 512 * MIB
    shm_bytes: int = 256 * MIB

    @classmethod
    def from_environment(cls, environ=None):
        """Return the defaults with each field overridden by ``AUTOGRADER_SANDBOX_<FIELD>`` when set.

        Raises ValueError, naming the variable, when a value is not a non-negative integer.
        """
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            name = ENV_PREFIX + field.name.upper()
            if name not in environ:
                continue
            try:
                value = int(environ[name])
            except ValueError:
                value = -1
            if value < 0:
                raise ValueError(f"{name}={environ[name]!r} is invalid: expected a non-negative integer")
            values[field.name] = value
        return cls(**values)

    def rlimits(self):
        """Return ``{name: [soft, hard]}`` by the names that ``init.RLIMIT_NAMES`` and ``apply_rlimits`` use.

        Core dumps are always off. A field of 0 is left out.
        """
        candidates = {
            "address_space": self.address_space_bytes,
            "processes": self.processes,
            "file_size": self.file_size_bytes,
            "open_files": self.open_files,
            "cpu_seconds": self.cpu_seconds,
        }
        values = {name: [value, value] for name, value in candidates.items() if value}
        if "cpu_seconds" in values:
            values["cpu_seconds"][1] += CPU_GRACE_SECONDS
        values["core_size"] = [0, 0]
        return values


RLIMITS = {
    "address_space": resource.RLIMIT_AS,
    "processes": resource.RLIMIT_NPROC,
    "file_size": resource.RLIMIT_FSIZE,
    "open_files": resource.RLIMIT_NOFILE,
    "cpu_seconds": resource.RLIMIT_CPU,
    "core_size": resource.RLIMIT_CORE,
}


def apply_rlimits(values):
    """Lower the soft and hard limits of this process to ``values``, keeping any that are lower already.
 Used in the child between fork and exec when there are
    no namespaces, so it must not log.
    """
    for name, (soft, hard) in values.items():
        kind = RLIMITS[name]
        current_soft, current_hard = resource.getrlimit(kind)
        if current_hard != resource.RLIM_INFINITY:
            hard = min(hard, current_hard)
        if current_soft != resource.RLIM_INFINITY:
            soft = min(soft, current_soft)
        resource.setrlimit(kind, (min(soft, hard), hard))
