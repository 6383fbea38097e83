"""Sandbox for student code: the Jupyter kernel that grading uses, and other commands.

With root and util-linux ``unshare``, a sandboxed command runs
- in new network (loopback only), mount, pid and IPC namespaces;
- as uid and gid ``UID_BASE`` + the launcher's pid, without supplementary groups and with
  ``PR_SET_NO_NEW_PRIVS``;
- on a tmpfs root that contains only the system directories, the Python install, and the paths
  that the caller lists as readable (read-only) or writable. It also has a private ``/tmp`` and
  ``/dev/shm``, and a scratch copy of the working directory at its own path;
- with the rlimits and cgroup limits of ``SandboxLimits``.
Without root or namespaces, only the rlimits (and the cgroups, when writable) and the scratch copy
apply, and one warning names the protections that are off.

``run_sandboxed`` runs any command; ``python -m autograder.sandbox`` is the kernel launcher of the
``vgg11-sandbox`` kernelspec.
"""

from autograder.sandbox.launcher import SandboxResult, probe_support, run_sandboxed
from autograder.sandbox.limits import SandboxLimits

__all__ = ["SandboxLimits", "SandboxResult", "probe_support", "run_sandboxed"]
