"""The sandboxed Jupyter kernel: the launcher behind the kernelspec and its kernel manager.

``launch_kernel`` runs ipykernel through ``run_sandboxed`` with what the notebook needs: the Python
install, the ``autograder`` package, the Fashion-MNIST data and the torch hub weights read-only,
and ``$AUTOGRADER_HANDIN_DIR`` read-write.

A network namespace has only its own loopback, so ZeroMQ over TCP cannot reach the kernel.
``SandboxKernelManager`` therefore uses the ipc transport (unix sockets) in a new directory per
kernel. With a TCP connection file the launcher keeps the host network and logs that network isolation is off.

The launcher writes ``<connection file without .json>-sandbox.json``: the enforced and missing
protections when the kernel starts, and how the kernel ended when it exits (``exit_code`` or
``signal``, ``oom_kills``). ``read_sandbox_status`` reads it.
"""

import json
import logging
import os
import shutil
import sys
import tempfile

import zmq
import zmq.asyncio
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.manager import AsyncKernelManager

import autograder
from autograder.sandbox.launcher import chown_tree, make_private_dir, probe_support, run_sandboxed, sandbox_uid

log = logging.getLogger(__name__)

KERNEL_NAME = "vgg11-sandbox"
HANDIN_DIR_VARIABLE = "AUTOGRADER_HANDIN_DIR"

# The same names as in autograder.data, which is not imported here because it imports torch.
DATA_DIR_VARIABLE = "ASSIGNMENT_DATA_DIR"
DEFAULT_DATA_DIR = "~/.cache/vgg11-assignment/data"
RAW_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# nbgrader runs the kernel in autograded/<student>/<assignment>/, where it has already written the
# notebook with the hidden tests put back, so notebooks are left out of the kernel's scratch copy.
SCRATCH_IGNORE = ("*.ipynb", ".ipynb_checkpoints")

# Writable locations inside the sandbox, all on its private /tmp.
SANDBOX_HOME = "/tmp"
SANDBOX_DATA_DIR = "/tmp/fashion-mnist"
SANDBOX_TORCH_HOME = "/tmp/torch"


def status_path(connection_file):
    return os.path.splitext(connection_file)[0] + "-sandbox.json"


def read_sandbox_status(connection_file):
    """Return the status that the launcher wrote for ``connection_file``, or {} when there is none."""
    try:
        with open(status_path(connection_file), encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def _torch_hub_dir():
    """Return torch.hub.get_dir() as torch 2.x computes it, without importing torch."""
    torch_home = os.environ.get("TORCH_HOME")
    if not torch_home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        torch_home = os.path.join(cache, "torch")
    return os.path.join(os.path.abspath(os.path.expanduser(torch_home)), "hub")


def _data_dir():
    return os.path.abspath(os.path.expanduser(os.environ.get(DATA_DIR_VARIABLE) or str(DEFAULT_DATA_DIR)))


def _data_is_unpacked(data_dir):
    raw = os.path.join(data_dir, "FashionMNIST", "raw")
    return all(os.path.isfile(os.path.join(raw, name)) for name in RAW_FILES)


def _readable_by_others(directory):
    """Return whether any uid can list ``directory`` and read every file in it."""
    if os.stat(directory).st_mode & 0o005 != 0o005:
        return False
    for entry in os.scandir(directory):
        if entry.is_file() and not entry.stat().st_mode & 0o004:
            return False
    return True


def _warn_copy(directory):
    log.warning(
        "샌드박스 사용자가 %s 의 파일을 읽을 수 없어 kernel마다 사본을 만듭니다. "
        "`chmod -R o+rX %s` 로 권한을 주면 복사하지 않습니다. / "
        "The sandbox user cannot read the files in %s, so each kernel gets a copy. "
        "`chmod -R o+rX %s` avoids the copy.",
        directory, directory, directory, directory,
    )


# Variables that student code may see. Others, such as NBGRADER_DB_URL with its password or tokens,
# stay with the grader; the launcher sets HOME, TORCH_HOME, PYTHONPATH and the data folder itself.
_STUDENT_VARIABLES = {"PATH", "HOME", "USER", "LANG", "LANGUAGE", "TZ", "TERM", "VIRTUAL_ENV", "CI", "NBGRADER_EXECUTION",
                      "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES", "TORCH_HOME",
                      "XDG_CACHE_HOME", "XDG_CONFIG_HOME"}
_STUDENT_PREFIXES = ("LC_", "JPY_", "AUTOGRADER_", "ASSIGNMENT_", "PYDEVD_")


def student_environment(environ):
    """Return the variables of ``environ`` that a sandboxed command may see."""
    return {name: value for name, value in environ.items()
            if name in _STUDENT_VARIABLES or name.startswith(_STUDENT_PREFIXES)}


def launch_kernel(connection_file, kernel_arguments):
    """Run ipykernel for ``connection_file`` in the sandbox until it exits, and return its exit code."""
    with open(connection_file, encoding="utf-8") as handle:
        connection = json.load(handle)

    namespaces = probe_support().namespaces
    uid = sandbox_uid()
    runtime_dir = make_private_dir("kernel")
    try:
        # The connection file is 0600 and owned by the grader, so the kernel gets its own copy.
        kernel_connection_file = os.path.join(runtime_dir, "connection.json")
        shutil.copyfile(connection_file, kernel_connection_file)
        os.chmod(kernel_connection_file, 0o400)

        writable = [runtime_dir]
        tcp = connection.get("transport", "tcp") != "ipc"
        if not tcp:
            writable.append(os.path.dirname(os.path.abspath(connection["ip"])))
        handin_dir = os.environ.get(HANDIN_DIR_VARIABLE)
        if handin_dir and os.path.isdir(handin_dir):
            writable.append(handin_dir)
        # Without namespaces, the launcher may still switch to the sandbox uid (see run_sandboxed).
        # NOTE: that switch is tested with plain commands only. A kernel running as the sandbox uid
        # without namespaces needs a Python install outside a mode-700 home and has not been run yet.
        if os.geteuid() == 0:
            for path in writable:
                chown_tree(path, uid)

        env = student_environment(os.environ)
        package_dir = os.path.dirname(os.path.abspath(autograder.__file__))
        env["PYTHONPATH"] = os.path.dirname(package_dir)
        readable = [package_dir]
        copies = []
        hub_dir = _torch_hub_dir()
        checkpoints = os.path.join(hub_dir, "checkpoints")
        env["TORCH_HOME"] = os.path.dirname(hub_dir)
        if namespaces and os.path.isdir(checkpoints) and not _readable_by_others(checkpoints):
            _warn_copy(checkpoints)
            env["TORCH_HOME"] = SANDBOX_TORCH_HOME
            copies.append((checkpoints, SANDBOX_TORCH_HOME + "/hub/checkpoints"))
        else:
            readable.append(checkpoints)

        data_dir = _data_dir()
        raw_dir = os.path.join(data_dir, "FashionMNIST", "raw")
        if not namespaces and _data_is_unpacked(data_dir):
            env[DATA_DIR_VARIABLE] = data_dir
            readable.append(data_dir)
        elif not namespaces:
            # The kernel may run as the sandbox uid, which cannot write the grader's data folder.
            env[DATA_DIR_VARIABLE] = os.path.join(runtime_dir, "data")
        elif _data_is_unpacked(data_dir) and _readable_by_others(raw_dir):
            env[DATA_DIR_VARIABLE] = data_dir
            readable.append(data_dir)
        else:
            # find_fashion_mnist writes into a data directory that is not unpacked yet, so the
            # kernel unpacks its own copy into its /tmp, for example from the Debian package.
            env[DATA_DIR_VARIABLE] = SANDBOX_DATA_DIR
            if _data_is_unpacked(data_dir):
                _warn_copy(raw_dir)
                copies.append((raw_dir, SANDBOX_DATA_DIR + "/FashionMNIST/raw"))
        # ipykernel exits when its parent process changes. In the pid namespace its parent is
        # process 1, which ipykernel accepts only as JPY_PARENT_PID=1 (ipykernel 7.4, kernelapp.py).
        env["JPY_PARENT_PID"] = "1" if namespaces else str(os.getpid())
        # The grader's home is not the student's: the kernel gets an empty one of its own.
        home = SANDBOX_HOME if namespaces else os.path.join(runtime_dir, "home")
        if not namespaces:
            os.mkdir(home)
            if os.geteuid() == 0:
                chown_tree(home, uid)
        env["HOME"] = home
        env["MPLCONFIGDIR"] = os.path.join(home, "matplotlib")
        env["IPYTHONDIR"] = os.path.join(home, "ipython")
        env.pop("XDG_CACHE_HOME", None)
        env.pop("XDG_CONFIG_HOME", None)

        def write_start_status(result):
            _write_json(status_path(connection_file), result.as_dict())

        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", kernel_connection_file, *kernel_arguments]
        result = run_sandboxed(
            argv,
            cwd=os.getcwd(),
            cwd_ignore=SCRATCH_IGNORE,
            readable=readable,
            writable=writable,
            copies=copies,
            env=env,
            network=tcp,
            uid=uid,
            on_start=write_start_status,
        )
        _write_json(status_path(connection_file), result.as_dict())
    finally:
        shutil.rmtree(runtime_dir, ignore_errors=True)

    if result.signal:
        return 128 + result.signal
    return result.exit_code if result.exit_code is not None else 1


def _write_json(path, value):
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(value, handle)
    os.replace(temporary, path)


# Largest message that the grader accepts from a kernel. ZeroMQ drops the connection on a larger
# message (ZMQ_MAXMSGSIZE), so one huge print cannot fill the grader's memory. The connection is
# made again at once and later messages arrive, but the large message is lost without a note.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class SandboxKernelClient(AsyncKernelClient):
    """``AsyncKernelClient`` whose sockets reject messages larger than ``MAX_MESSAGE_BYTES``."""

    def _context_default(self):
        self._created_context = True
        context = zmq.asyncio.Context()
        context.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        return context


class SandboxKernelManager(AsyncKernelManager):
    """``AsyncKernelManager`` that talks to the kernel over unix sockets in a new directory per kernel.

    The directory is 0700 and removed with the kernel's other resources. Used for every kernel that
    ``BoundedExecute`` starts; the ipc transport works for unsandboxed kernels too.
    """

    client_class = "autograder.sandbox.kernel.SandboxKernelClient"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.client_factory = SandboxKernelClient
        self._ipc_dir = tempfile.mkdtemp(prefix="autograder-ipc-")
        self.transport = "ipc"
        self.ip = os.path.join(self._ipc_dir, "kernel")

    async def _async_cleanup_resources(self, restart=False):
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            for path in (status_path(self.connection_file),) if self.connection_file else ():
                if os.path.exists(path):
                    os.remove(path)
            shutil.rmtree(self._ipc_dir, ignore_errors=True)

    cleanup_resources = _async_cleanup_resources
