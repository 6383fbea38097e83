"""Grade the solution and hostile copies of it through real nbgrader, with and without the sandbox.

Two temporary courses are graded with ``python -m autograder.grade``: one with the sandboxed kernel
(the default of nbgrader_config.py) that also contains the hostile submissions, and one with
``AUTOGRADER_SANDBOX=off`` that contains only the solution. The solution must get the same points
in both; the test prints the time that the sandbox adds to one submission.
"""

import hashlib
import re

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from autograder.course import ASSIGNMENT_ID, NOTEBOOK_NAME, TEST_CELLS
from autograder.sandbox import probe_support

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SOLUTION = "solution"
CANARY = "HIDDEN-TEST-CANARY-7f3a9c"

# Student id -> (the grade_id of the cell after which the hostile cell goes, its source).
HOSTILE = {
    "self_kill_first": ("setup", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
    "self_kill_after_model": ("vgg11_model", "import os\nos._exit(7)"),
    "print_flood": ("setup", "for i in range(300_000):\n    print('x' * 99)"),
    "tamper": (
        "setup",
        # The kernel's cwd is autograded/<student>/Assignment1/, three levels below the course root.
        "import glob, os\n"
        "root = os.path.abspath('../../..')\n"
        "found = []\n"
        "for path in glob.glob(root + '/**', recursive=True):\n"
        "    try:\n"
        "        if os.path.isfile(path) and 'HIDDEN TESTS' in open(path, errors='ignore').read():\n"
        "            found.append(path)\n"
        "    except OSError:\n"
        "        pass\n"
        "print('hidden tests found:', found)\n"
        "for name in ('nbgrader_config.py', 'gradebook.db', 'source/Assignment1/Assignment1_blank.ipynb',\n"
        "             'autograded/solution/Assignment1/pwned.txt', 'pwned.txt'):\n"
        "    try:\n"
        "        with open(os.path.join(root, name), 'a') as handle:\n"
        "            handle.write('pwned')\n"
        "        print('wrote', name)\n"
        "    except OSError as error:\n"
        "        print('blocked', name, type(error).__name__)\n"
        "open('pwned.txt', 'w').write('only in the scratch copy')",
    ),
}
# Points of each test cell that each hostile submission must get (the solution gets full points).
EXPECTED_POINTS = {
    "self_kill_first": {"test_vgg11_layers": 3, "test_vgg11_pool_shapes": 3, "test_vgg11_classifier": 2, "test_finetune_frozen": 2},
    "self_kill_after_model": {"test_vgg11_layers": 0, "test_vgg11_pool_shapes": 0, "test_vgg11_classifier": 0, "test_finetune_frozen": 2},
    "print_flood": {"test_vgg11_layers": 3, "test_vgg11_pool_shapes": 3, "test_vgg11_classifier": 2, "test_finetune_frozen": 2},
    "tamper": {"test_vgg11_layers": 3, "test_vgg11_pool_shapes": 3, "test_vgg11_classifier": 2, "test_finetune_frozen": 2},
}
PROTECTED = ("nbgrader_config.py", "source/Assignment1/Assignment1_blank.ipynb")


def _write_hostile(inbox, solution):
    for student_id, (after, source) in HOSTILE.items():
        notebook = nbformat.read(str(solution), as_version=4)
        grade_ids = [cell.metadata.get("nbgrader", {}).get("grade_id") for cell in notebook.cells]
        notebook.cells.insert(grade_ids.index(after) + 1, new_code_cell(source))
        path = inbox / student_id / ASSIGNMENT_ID / NOTEBOOK_NAME
        path.parent.mkdir(parents=True)
        nbformat.write(notebook, str(path))


def _copy_solution(inbox, examples):
    path = inbox / SOLUTION / ASSIGNMENT_ID / NOTEBOOK_NAME
    path.parent.mkdir(parents=True)
    path.write_bytes((examples / SOLUTION / ASSIGNMENT_ID / NOTEBOOK_NAME).read_bytes())


def _autograde_seconds(run, student_id):
    match = re.search(rf"Autograded {student_id} in (\d+) s", run.stderr)
    return int(match.group(1)) if match else None


def _digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def examples(repo_root):
    return repo_root / "examples" / "submissions"


@pytest.fixture(scope="module")
def sandboxed_course(grade_submissions, examples):
    digests = {}

    def write_submissions(inbox, release_notebook):
        _copy_solution(inbox, examples)
        _write_hostile(inbox, examples / SOLUTION / ASSIGNMENT_ID / NOTEBOOK_NAME)
        root = inbox.parent
        digests.update({name: _digest(root / name) for name in PROTECTED})

    course = grade_submissions(write_submissions)
    course.digests_before = digests
    return course


@pytest.fixture(scope="module")
def plain_course(grade_submissions, examples):
    return grade_submissions(lambda inbox, release: _copy_solution(inbox, examples), env={"AUTOGRADER_SANDBOX": "off"})


def test_sandboxed_batch_finishes(sandboxed_course):
    run = sandboxed_course.run
    assert run.returncode == 0, run.stdout + run.stderr


def test_solution_same_points_with_sandbox(sandboxed_course, plain_course):
    sandboxed = _autograde_seconds(sandboxed_course.run, SOLUTION)
    plain = _autograde_seconds(plain_course.run, SOLUTION)
    print(f"solution autograde: {sandboxed} s in the sandbox, {plain} s without; overhead {sandboxed - plain} s")
    for grade_id in TEST_CELLS:
        with_sandbox = sandboxed_course.score(SOLUTION, grade_id)
        without = plain_course.score(SOLUTION, grade_id)
        assert with_sandbox == without, grade_id
        assert with_sandbox[0] == with_sandbox[1], grade_id


@pytest.mark.parametrize("student_id", sorted(HOSTILE))
def test_hostile_points(sandboxed_course, student_id):
    for grade_id, points in EXPECTED_POINTS[student_id].items():
        assert sandboxed_course.score(student_id, grade_id)[0] == points, (student_id, grade_id)


@pytest.mark.parametrize(
    "student_id, kind",
    [("self_kill_first", "kernel_died"), ("self_kill_after_model", "kernel_died"), ("print_flood", "output_truncated")],
)
def test_hostile_limit_recorded(sandboxed_course, student_id, kind):
    notebook = nbformat.read(str(sandboxed_course.autograded(student_id)), as_version=4)
    kinds = [event["kind"] for event in notebook.metadata["autograder"]["limits"]]
    assert kinds == [kind]


@pytest.mark.skipif(not probe_support().namespaces, reason=f"sandbox namespaces unavailable: {probe_support().reason}")
def test_tamper_blocked(sandboxed_course):
    root = sandboxed_course.root
    notebook = nbformat.read(str(sandboxed_course.autograded("tamper")), as_version=4)
    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", []) if output.get("output_type") == "stream"
    )
    assert "hidden tests found: []" in printed, printed
    assert "wrote" not in printed, printed
    assert CANARY not in printed
    for name in PROTECTED:
        assert _digest(root / name) == sandboxed_course.digests_before[name], name
    assert not (root / "pwned.txt").exists()
    assert not (root / "autograded" / SOLUTION / ASSIGNMENT_ID / "pwned.txt").exists()
    assert not (root / "autograded" / "tamper" / ASSIGNMENT_ID / "pwned.txt").exists()
