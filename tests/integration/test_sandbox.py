"""The grading sandbox and BoundedExecute's limits, with real kernels started from a fake course.

Each test runs a small notebook with ``BoundedExecute`` and the ``vgg11-sandbox`` kernelspec, in
``autograded/student/Assignment1/`` of a temporary course that also has ``source/`` and a
``gradebook.db``. Tests of isolation need root and util-linux ``unshare`` and are skipped without
them; the limit tests also run without, where only the rlimits apply.
"""

import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_notebook

from autograder.limit_events import KERNEL_DIED_ENAME, KERNEL_UNRESPONSIVE_ENAME
from autograder.nbgrader_ext import BoundedExecute
from autograder.sandbox import SandboxLimits, launcher, probe_support, run_sandboxed

pytestmark = pytest.mark.integration

REPO_ROOT = Path(__file__).resolve().parents[2]
SECRET = "HIDDEN-TEST-CANARY-sandbox-secret"
needs_namespaces = pytest.mark.skipif(
    not probe_support().namespaces, reason=f"sandbox namespaces unavailable: {probe_support().reason}"
)


@pytest.fixture
def course(tmp_path, monkeypatch):
    """A course root with secret files, a submission folder and a handin directory."""
    root = tmp_path / "course"
    (root / "source" / "Assignment1").mkdir(parents=True)
    (root / "source" / "Assignment1" / "hidden.txt").write_text(SECRET, encoding="utf-8")
    (root / "gradebook.db").write_text(SECRET, encoding="utf-8")
    (root / "autograded" / "other" / "Assignment1").mkdir(parents=True)
    (root / "autograded" / "other" / "Assignment1" / "notes.txt").write_text(SECRET, encoding="utf-8")
    submission = root / "autograded" / "student" / "Assignment1"
    submission.mkdir(parents=True)
    (submission / "data.txt").write_text("original", encoding="utf-8")
    # nbgrader writes the notebook with its hidden tests into the kernel's folder before running it.
    (submission / "Assignment1_blank.ipynb").write_text(SECRET, encoding="utf-8")
    handin = tmp_path / "handin"
    handin.mkdir()
    monkeypatch.setenv("AUTOGRADER_HANDIN_DIR", str(handin))
    monkeypatch.setenv("JUPYTER_PATH", str(REPO_ROOT / "share" / "jupyter"))
    pythonpath = [str(REPO_ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(pythonpath))
    return {"root": root, "submission": submission, "handin": handin}


def run_cells(sources, cwd, **options):
    """Run ``sources`` as code cells in the sandboxed kernel; return the executed notebook."""
    notebook = new_notebook(
        cells=[new_code_cell(source) for source in sources],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    options.setdefault("timeout", 60)
    executor = BoundedExecute(kernel_name="vgg11-sandbox", **options)
    notebook, _ = executor.preprocess(notebook, {"metadata": {"path": str(cwd)}})
    return notebook


def stdout(cell):
    return "".join(output.get("text", "") for output in cell.outputs if output.get("output_type") == "stream")


def errors(cell):
    return [output for output in cell.outputs if output.get("output_type") == "error"]


def limit_kinds(notebook):
    return [(event["cell"], event["kind"]) for event in notebook.metadata.get("autograder", {}).get("limits", [])]


@pytest.fixture
def tcp_server():
    """A TCP server on 127.0.0.1 outside the sandbox that counts the connections it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            accepted.append(connection)
            connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    server.close()


@needs_namespaces
def test_sandbox_has_no_network(course, tcp_server):
    port, accepted = tcp_server
    source = (
        "import socket\n"
        "try:\n"
        f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
        "    print('connected')\n"
        "except OSError as error:\n"
        "    print('blocked', type(error).__name__)\n"
        "print(sorted(name for _, name in socket.if_nameindex()))"
    )
    notebook = run_cells([source], course["submission"])
    output = stdout(notebook.cells[0])
    assert "blocked" in output, output
    assert "['lo']" in output, output
    assert accepted == []


def test_sandbox_hides_grader_variables(course, monkeypatch):
    monkeypatch.setenv("NBGRADER_DB_URL", "postgresql://grader:secret@db/course")
    notebook = run_cells(["import os\nprint(sorted(os.environ))"], course["submission"])
    output = stdout(notebook.cells[0])
    assert "NBGRADER_DB_URL" not in output, output


@needs_namespaces
def test_sandbox_own_ipc_namespace(course):
    source = "import os\nprint(os.readlink('/proc/self/ns/ipc'), os.readlink('/proc/self/ns/net'))"
    notebook = run_cells([source], course["submission"])
    inside = stdout(notebook.cells[0]).split()
    assert inside[0] != os.readlink("/proc/self/ns/ipc")
    assert inside[1] != os.readlink("/proc/self/ns/net")


@needs_namespaces
def test_sandbox_hides_course_files(course):
    root = course["root"]
    probes = {
        "source": root / "source" / "Assignment1" / "hidden.txt",
        "gradebook": root / "gradebook.db",
        "other_student": root / "autograded" / "other" / "Assignment1" / "notes.txt",
        "course_root": root,
        "root_home": Path("/root"),
        "nbgrader_config": REPO_ROOT / "nbgrader_config.py",
        "own_notebook": course["submission"] / "Assignment1_blank.ipynb",
    }
    source = (
        "import json, os\n"
        f"probes = {json.dumps({name: str(path) for name, path in probes.items()})}\n"
        "result = {}\n"
        "for name, path in probes.items():\n"
        "    try:\n"
        "        result[name] = os.listdir(path) if os.path.isdir(path) else open(path).read()\n"
        "    except OSError as error:\n"
        "        result[name] = type(error).__name__\n"
        "print(json.dumps(result))"
    )
    notebook = run_cells([source], course["submission"])
    result = json.loads(stdout(notebook.cells[0]))
    assert SECRET not in json.dumps(result)
    for name in ("source", "gradebook", "other_student", "nbgrader_config", "own_notebook"):
        assert result[name] in ("FileNotFoundError", "PermissionError"), (name, result[name])
    assert "gradebook.db" not in result["course_root"]
    assert result["root_home"] == "PermissionError" or ".bashrc" not in result["root_home"]


@needs_namespaces
def test_sandbox_writes_only_scratch_and_handin(course):
    submission, handin = course["submission"], course["handin"]
    source = (
        "import os\n"
        f"targets = {{'cwd': 'data.txt', 'handin': {str(handin / 'model.pt')!r}, 'tmp': '/tmp/x',\n"
        f"           'source': {str(course['root'] / 'source' / 'Assignment1' / 'new.py')!r},\n"
        f"           'repo': {str(REPO_ROOT / 'autograder' / 'injected.py')!r}, 'usr': '/usr/injected'}}\n"
        "for name, path in targets.items():\n"
        "    try:\n"
        "        with open(path, 'w') as handle:\n"
        "            handle.write('changed')\n"
        "        print(name, 'written')\n"
        "    except OSError as error:\n"
        "        print(name, type(error).__name__)"
    )
    notebook = run_cells([source], submission)
    lines = dict(line.split(" ", 1) for line in stdout(notebook.cells[0]).splitlines())
    assert lines["cwd"] == "written"
    assert lines["handin"] == "written"
    assert lines["tmp"] == "written"
    for name in ("source", "repo", "usr"):
        assert lines[name] != "written", name

    assert (submission / "data.txt").read_text(encoding="utf-8") == "original"
    assert (handin / "model.pt").read_text(encoding="utf-8") == "changed"
    assert not (course["root"] / "source" / "Assignment1" / "new.py").exists()
    assert not (REPO_ROOT / "autograder" / "injected.py").exists()


@needs_namespaces
def test_sandbox_fork_bomb_contained(course, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_SANDBOX_PROCESSES", "64")
    bomb = (
        "import os, time\n"
        "children = 0\n"
        "try:\n"
        "    while True:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(3)\n"
        "            os._exit(0)\n"
        "        children += 1\n"
        "except OSError as error:\n"
        "    print('fork failed after', children, type(error).__name__)\n"
        "while True:\n"
        "    try:\n"
        "        os.wait()\n"
        "    except ChildProcessError:\n"
        "        break"
    )
    later = "print('kernel alive')"
    notebook = run_cells([bomb, later], course["submission"])
    output = stdout(notebook.cells[0])
    assert "fork failed after" in output, notebook.cells[0].outputs
    assert int(output.split()[3]) < 64
    assert stdout(notebook.cells[1]).strip() == "kernel alive"
    # The grader can still start processes.
    assert os.system("true") == 0


def test_memory_hog_gets_memory_error(course, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_SANDBOX_ADDRESS_SPACE_BYTES", str(2 * 2**30))
    notebook = run_cells(["x = bytearray(3 * 2**30)", "print('still running')"], course["submission"])
    assert errors(notebook.cells[0])[0]["ename"] == "MemoryError"
    assert stdout(notebook.cells[1]).strip() == "still running"
    assert (0, "memory_limit") in limit_kinds(notebook)


@needs_namespaces
def test_memory_cgroup_kill_recorded(course, monkeypatch):
    monkeypatch.setenv("AUTOGRADER_SANDBOX_ADDRESS_SPACE_BYTES", str(4 * 2**30))
    monkeypatch.setenv("AUTOGRADER_SANDBOX_MEMORY_BYTES", str(512 * 2**20))
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 2**20))"
    notebook = run_cells([hog, "print('restarted')"], course["submission"])
    assert errors(notebook.cells[0])[-1]["ename"] == KERNEL_DIED_ENAME
    assert (0, "memory_limit") in limit_kinds(notebook)
    assert stdout(notebook.cells[1]).strip() == "restarted"


def test_print_flood_truncated(course):
    flood = "for i in range(100_000):\n    print('x' * 99)"
    notebook = run_cells([flood, "print('next')"], course["submission"], max_output_chars=20_000)
    text = stdout(notebook.cells[0])
    assert len(text) < 21_000
    assert "output truncated after 20,000 characters" in text
    assert "출력이 너무 많아" in text
    assert stdout(notebook.cells[1]) == "next\n"
    assert limit_kinds(notebook) == [(0, "output_truncated")]


def test_output_count_truncated(course):
    flood = "from IPython.display import display\nfor i in range(50):\n    display(i)"
    notebook = run_cells([flood], course["submission"], max_outputs=10)
    displays = [output for output in notebook.cells[0].outputs if output["output_type"] == "display_data"]
    assert len(displays) == 10
    assert limit_kinds(notebook) == [(0, "output_truncated")]


def test_self_kill_recorded_and_later_cells_run(course):
    cells = [
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "print('after kill')",
        "import os\nos._exit(3)",
        "print('after exit')",
    ]
    notebook = run_cells(cells, course["submission"])
    assert errors(notebook.cells[0])[-1]["ename"] == KERNEL_DIED_ENAME
    assert "SIGKILL" in errors(notebook.cells[0])[-1]["evalue"]
    assert stdout(notebook.cells[1]) == "after kill\n"
    assert "exit code 3" in errors(notebook.cells[2])[-1]["evalue"]
    assert stdout(notebook.cells[3]) == "after exit\n"
    events = notebook.metadata["autograder"]["limits"]
    assert [(event["cell"], event["kind"]) for event in events] == [(0, "kernel_died"), (2, "kernel_died")]
    assert events[0]["detail"] == "signal 9 (SIGKILL)"


def test_ignored_interrupt_restarts_kernel(course):
    stubborn = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)"
    started = time.monotonic()
    notebook = run_cells([stubborn, "print('next')"], course["submission"], timeout=3)
    assert time.monotonic() - started < 50
    assert errors(notebook.cells[0])[-1]["ename"] == KERNEL_UNRESPONSIVE_ENAME
    assert limit_kinds(notebook) == [(0, "cell_timeout"), (0, "kernel_unresponsive")]
    assert stdout(notebook.cells[1]) == "next\n"


def test_sandbox_status_in_metadata(course):
    notebook = run_cells(["1 + 1"], course["submission"])
    sandbox = notebook.metadata["autograder"]["sandbox"]
    assert "rlimits" in sandbox["enforced"]
    if probe_support().namespaces:
        assert sandbox["missing"] == []
        assert {"network", "filesystem", "user"} <= set(sandbox["enforced"])


def test_run_sandboxed_output_and_cwd(tmp_path):
    (tmp_path / "input.txt").write_text("42", encoding="utf-8")
    output = tmp_path / "output.txt"
    with open(output, "w", encoding="utf-8") as handle:
        result = run_sandboxed(
            [sys.executable, "-c", "print(open('input.txt').read()); open('input.txt', 'w').write('changed')"],
            cwd=str(tmp_path),
            stdout=handle,
        )
    assert result.exit_code == 0
    assert output.read_text(encoding="utf-8") == "42\n"
    assert (tmp_path / "input.txt").read_text(encoding="utf-8") == "42"


def test_run_sandboxed_exit_status(tmp_path):
    limits = SandboxLimits(address_space_bytes=2 * 2**30, cpu_seconds=1)
    spin = run_sandboxed([sys.executable, "-c", "while True: pass"], cwd=str(tmp_path), limits=limits)
    assert spin.signal == 24  # SIGXCPU at the CPU time limit
    plain = run_sandboxed([sys.executable, "-c", "import sys; sys.exit(5)"], cwd=str(tmp_path), limits=limits)
    assert plain.exit_code == 5
    assert plain.signal is None


def test_without_namespaces_limits_still_apply(course, monkeypatch, capfd):
    monkeypatch.setenv("AUTOGRADER_SANDBOX_NAMESPACES", "off")
    monkeypatch.setenv("AUTOGRADER_SANDBOX_ADDRESS_SPACE_BYTES", str(2 * 2**30))
    cells = [
        "import os\nprint(os.getcwd())\nopen('data.txt', 'w').write('changed')",
        "x = bytearray(3 * 2**30)",
        "for i in range(50_000):\n    print('x' * 99)",
        "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
        "print('after kill')",
    ]
    notebook = run_cells(cells, course["submission"], max_output_chars=10_000)

    assert stdout(notebook.cells[0]).strip() != str(course["submission"])
    assert (course["submission"] / "data.txt").read_text(encoding="utf-8") == "original"
    assert errors(notebook.cells[1])[0]["ename"] == "MemoryError"
    assert stdout(notebook.cells[4]) == "after kill\n"
    assert [kind for _, kind in limit_kinds(notebook)] == ["memory_limit", "output_truncated", "kernel_died"]
    sandbox = notebook.metadata["autograder"]["sandbox"]
    assert {"network", "filesystem"} <= set(sandbox["missing"])
    # As root, the kernel gets a uid of its own only where other users can read the Python install.
    switches_user = os.geteuid() == 0 and launcher.unreadable_path(launcher.python_paths(), launcher.UID_BASE) is None
    assert "user" in sandbox["enforced" if switches_user else "missing"]
    warnings = [line for line in capfd.readouterr().err.splitlines() if "Some sandbox protections are off" in line]
    # One warning per kernel start: the first kernel and the one restarted after the kill.
    assert len(warnings) == 2, warnings
    assert "AUTOGRADER_SANDBOX_NAMESPACES=off" in warnings[0]


@needs_namespaces
def test_unreadable_weights_copied_in(course, tmp_path, monkeypatch):
    checkpoints = tmp_path / "torch" / "hub" / "checkpoints"
    checkpoints.mkdir(parents=True)
    (checkpoints / "weights.pth").write_text("weights", encoding="utf-8")
    (checkpoints / "weights.pth").chmod(0o600)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    source = "import os\nprint(open(os.path.join(os.environ['TORCH_HOME'], 'hub', 'checkpoints', 'weights.pth')).read())"
    notebook = run_cells([source], course["submission"])
    assert stdout(notebook.cells[0]) == "weights\n", notebook.cells[0].outputs


def test_notebook_timeout_recorded(course):
    notebook = run_cells(["import time\ntime.sleep(30)", "print('next')"], course["submission"], notebook_timeout=3)
    assert errors(notebook.cells[0])[-1]["ename"] == "CellTimeoutError"
    assert limit_kinds(notebook)[0] == (0, "notebook_timeout")
    assert stdout(notebook.cells[1]) == "next\n"


@pytest.fixture
def without_namespaces(monkeypatch):
    monkeypatch.setenv(launcher.NAMESPACES_VARIABLE, "off")
    monkeypatch.setattr(launcher, "_support_cache", None)


def _user_id_in_sandbox(tmp_path, readable=()):
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    output = tmp_path / "uid.txt"
    with open(output, "w", encoding="utf-8") as handle:
        result = run_sandboxed(["/usr/bin/id", "-u"], cwd=str(work), readable=readable, stdout=handle,
                               uid=launcher.UID_BASE + 7)
    return output.read_text(encoding="utf-8").strip(), result


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_without_namespaces_switches_user(tmp_path, without_namespaces):
    uid, result = _user_id_in_sandbox(tmp_path)
    assert uid == str(launcher.UID_BASE + 7)
    assert "user" in result.enforced


@pytest.mark.skipif(os.geteuid() != 0, reason="switching to another uid needs root")
def test_without_namespaces_unreadable_path_keeps_root(tmp_path, without_namespaces):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    uid, result = _user_id_in_sandbox(tmp_path, readable=[str(private)])
    assert uid == "0"
    assert "user" in result.missing


@pytest.fixture
def public_dir():
    """A folder in /tmp that every user can enter: pytest's tmp_path lies under a 0700 folder."""
    path = Path(tempfile.mkdtemp(prefix="vgg11-permissions-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a folder's owner needs root")
@pytest.mark.parametrize(("mode", "owner", "readable"), [
    (0o755, "root", True),
    (0o700, "root", False),
    (0o711, "root", False),
    (0o700, "sandbox", True),
    (0o750, "sandbox-group", True),
], ids=["755-root", "700-root", "711-root", "700-sandbox-owner", "750-sandbox-group"])
def test_unreadable_path_modes(public_dir, mode, owner, readable):
    uid = launcher.UID_BASE + 7
    folder = public_dir / "folder"
    folder.mkdir(mode=mode)
    folder.chmod(mode)
    os.chown(folder, uid if owner == "sandbox" else 0, uid if owner == "sandbox-group" else 0)

    hidden = launcher.unreadable_path([str(folder)], uid)

    assert (hidden is None) == readable, hidden


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a folder's owner needs root")
def test_unreadable_path_parent_folder(public_dir):
    (public_dir / "closed" / "open").mkdir(parents=True)
    (public_dir / "closed").chmod(0o700)
    assert launcher.unreadable_path([str(public_dir / "closed" / "open")], launcher.UID_BASE + 7) == str(public_dir / "closed")
