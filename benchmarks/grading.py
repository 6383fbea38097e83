"""Print the cost of grading: per submission against plain execution, and batch throughput with K workers.

Run from the repository root in the venv (``source "$(bin/setup)/bin/activate"; export PYTHONPATH=$PWD``)::

    python -m benchmarks.grading                        # 20 submissions, 1, 2 and 3 workers
    python -m benchmarks.grading --submissions=40 --workers=1,2,4
    python -m benchmarks.grading --skip-batch           # only the per-submission table

Per submission, for each bundled example: the wall time of ``jupyter nbconvert --to notebook --execute``
on the submitted notebook, and of our grading unit (``autograder.autograde.grade_submission``, which
runs ``nbgrader autograde`` for one student and reads the gradebook). Their ratio is the overhead of
grading: nbgrader's start, its preprocessors, the hidden tests and the gradebook writes. The peak
memory is the largest sum of resident memory (RSS) of the process tree, the kernel included, sampled
every 0.1 s with psutil.

Batch: N submissions, made by copying the six bundled examples under new student ids, are graded in a
new course by ``python -m autograder.grade --workers=K``. The baseline is plain ``nbgrader`` as a course
runs it by hand: ``generate_assignment``, ``autograde Assignment1`` (every student in one process, one
after another), ``generate_feedback`` and ``export``. Both include the same four steps.

Every run sets ``CI=1``, so the notebook's training cell takes the same bounded budget on any machine.
Nothing here is a test: the numbers depend on the machine and on what else it runs.
"""

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil

from autograder import report
from autograder.autograde import AutogradeJob, grade_submission, put_python_scripts_on_path, run_nbgrader
from autograder.course import ASSIGNMENT_ID, CONFIG_NAME, NOTEBOOK_NAME, find_course_root
from autograder.examples import EXAMPLES
from autograder.grade import GRADING_RELEASE_DIRECTORY, load_course_directory
from autograder.gradebook import GradebookLocation

REPO_ROOT = find_course_root()
EXAMPLES_DIR = REPO_ROOT / "examples" / "submissions"
SAMPLE_SECONDS = 0.1
NBCONVERT_CELL_TIMEOUT_SECONDS = 600


class PeakMemory:
    """Sample the resident memory of this process's children and their descendants until stopped."""

    def __init__(self):
        self.peak_bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self):
        process = psutil.Process()
        while not self._stop.is_set():
            total = 0
            for child in process.children(recursive=True):
                try:
                    total += child.memory_info().rss
                except psutil.Error:
                    continue
            self.peak_bytes = max(self.peak_bytes, total)
            self._stop.wait(SAMPLE_SECONDS)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self._stop.set()
        self._thread.join()

    @property
    def peak_mib(self):
        return self.peak_bytes / 2**20


def benchmark_environment():
    """Return the environment for every process that the benchmark starts, and set it here too."""
    put_python_scripts_on_path()
    pythonpath = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != str(REPO_ROOT)]
    os.environ["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), *pythonpath])
    os.environ["CI"] = "1"
    return dict(os.environ)


def make_course(folder, student_ids):
    """Write a course in ``folder`` whose inbox has a copy of a bundled example for each student id.

    ``student_ids`` maps the new student id to the bundled example that it copies.
    """
    folder = Path(folder)
    folder.mkdir(parents=True)
    shutil.copy(REPO_ROOT / CONFIG_NAME, folder)
    shutil.copytree(REPO_ROOT / "source", folder / "source", ignore=shutil.ignore_patterns("data", ".ipynb_checkpoints"))
    for student_id, example in student_ids.items():
        target = folder / "assignments" / student_id / ASSIGNMENT_ID
        target.mkdir(parents=True)
        shutil.copy(EXAMPLES_DIR / example / ASSIGNMENT_ID / NOTEBOOK_NAME, target)
    return folder


def replicated_students(count):
    """Return ``{student_id: example}`` with ``count`` students that cycle through the bundled examples."""
    examples = list(EXAMPLES)
    return {f"{examples[index % len(examples)]}_{index:03d}": examples[index % len(examples)] for index in range(count)}


def time_nbconvert(notebook, output_dir, env):
    """Execute ``notebook`` with ``jupyter nbconvert --execute`` and return (seconds, peak MiB, exit status)."""
    command = [
        sys.executable,
        "-m",
        "jupyter",
        "nbconvert",
        "--to=notebook",
        "--execute",
        # nbgrader runs every cell even after one raises, as a blank submission's cells do.
        "--allow-errors",
        f"--ExecutePreprocessor.timeout={NBCONVERT_CELL_TIMEOUT_SECONDS}",
        f"--output-dir={output_dir}",
        str(notebook),
    ]
    started = time.perf_counter()
    with PeakMemory() as memory:
        completed = subprocess.run(command, cwd=output_dir, env=env, capture_output=True, text=True)
    return time.perf_counter() - started, memory.peak_mib, completed.returncode


def time_grading_unit(course_root, student_id, logs):
    """Autograde one student with ``grade_submission`` and return (seconds, peak MiB, status)."""
    coursedir, _ = load_course_directory(course_root)
    gradebook = GradebookLocation.of_course(coursedir)
    max_scores = report.read_max_scores(gradebook.db_url)
    autograded = coursedir.format_path(coursedir.autograded_directory, student_id, ASSIGNMENT_ID)
    job = AutogradeJob(
        course_root=str(course_root),
        gradebook=gradebook,
        student_id=student_id,
        submitted_notebook=str(Path(course_root, "assignments", student_id, ASSIGNMENT_ID, NOTEBOOK_NAME)),
        autograded_notebook=str(Path(autograded, NOTEBOOK_NAME)),
        log_path=str(logs / f"{student_id}-autograde.log"),
        timeout=None,
        force=True,
        max_scores=max_scores,
        batch_started=time.time(),
    )
    started = time.perf_counter()
    with PeakMemory() as memory:
        result = grade_submission(job)
    return time.perf_counter() - started, memory.peak_mib, result.status


def per_submission(workdir, env):
    """Print one row per bundled example: plain execution, grading, their ratio and peak memory."""
    course_root = make_course(workdir / "per-submission", {example: example for example in EXAMPLES})
    logs = course_root / "build" / "grading-logs"
    generate = ["generate_assignment", ASSIGNMENT_ID, "--force", f"--CourseDirectory.release_directory={GRADING_RELEASE_DIRECTORY}"]
    coursedir, _ = load_course_directory(course_root)
    if run_nbgrader(generate, course_root, logs / "generate_assignment.log", gradebook=GradebookLocation.of_course(coursedir)) != 0:
        sys.exit(f"nbgrader generate_assignment failed; see {logs / 'generate_assignment.log'}")

    print("\n## Per submission (one at a time)\n")
    print("| submission | nbconvert --execute (s) | grading (s) | ratio | peak RSS nbconvert (MiB) | peak RSS grading (MiB) | status |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- |")
    plain_dir = workdir / "nbconvert"
    plain_dir.mkdir()
    for example in EXAMPLES:
        notebook = course_root / "assignments" / example / ASSIGNMENT_ID / NOTEBOOK_NAME
        plain_seconds, plain_mib, plain_status = time_nbconvert(notebook, plain_dir, env)
        graded_seconds, graded_mib, status = time_grading_unit(course_root, example, logs)
        plain = f"{plain_seconds:.1f}" + ("" if plain_status == 0 else f" (exit {plain_status})")
        print(
            f"| {example} | {plain} | {graded_seconds:.1f} | {graded_seconds / plain_seconds:.2f} "
            f"| {plain_mib:.0f} | {graded_mib:.0f} | {status} |",
            flush=True,
        )


def run_timed(command, cwd, env, log_path):
    """Run ``command`` with its output in ``log_path`` and return (seconds, exit status)."""
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log_file:
        completed = subprocess.run(command, cwd=cwd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    return time.perf_counter() - started, completed.returncode


def plain_nbgrader_batch(course_root, env):
    """Run the four plain nbgrader steps in ``course_root`` and return (total s, autograde s, failed steps)."""
    steps = [
        ["generate_assignment", ASSIGNMENT_ID, "--force", f"--CourseDirectory.release_directory={GRADING_RELEASE_DIRECTORY}"],
        ["autograde", ASSIGNMENT_ID],
        ["generate_feedback", ASSIGNMENT_ID],
        ["export"],
    ]
    total, autograde_seconds, failed = 0.0, 0.0, []
    for step in steps:
        seconds, status = run_timed(
            [sys.executable, "-m", "nbgrader", *step], course_root, env, course_root / f"plain-{step[0]}.log"
        )
        total += seconds
        if step[0] == "autograde":
            autograde_seconds = seconds
        if status != 0:
            failed.append(f"{step[0]} (exit {status})")
    return total, autograde_seconds, failed


def batch(workdir, env, count, worker_counts):
    """Print the batch table: plain nbgrader, then our grading app with each number of workers."""
    students = replicated_students(count)
    print(f"\n## Batch of {count} submissions (the six examples, copied under new student ids)\n")
    print("| run | wall time (s) | submissions per minute | speed-up against plain nbgrader | notes |")
    print("| --- | ---: | ---: | ---: | --- |")

    course_root = make_course(workdir / "batch-plain", students)
    plain_seconds, plain_autograde, failed = plain_nbgrader_batch(course_root, env)
    notes = f"autograde step alone {plain_autograde:.0f} s"
    if failed:
        notes += "; failed: " + ", ".join(failed)
    print(f"| plain nbgrader, sequential | {plain_seconds:.0f} | {60 * count / plain_seconds:.2f} | 1.00 | {notes} |", flush=True)

    for workers in worker_counts:
        course_root = make_course(workdir / f"batch-workers-{workers}", students)
        command = [sys.executable, "-m", "autograder.grade", f"--root={course_root}", f"--workers={workers}"]
        seconds, status = run_timed(command, course_root, env, course_root / "grade.log")
        graded = (course_root / "grade.log").read_text(encoding="utf-8").count("채점 완료 / graded")
        notes = f"{graded} of {count} graded" + ("" if status == 0 else f"; exit {status}")
        print(
            f"| autograder.grade --workers={workers} | {seconds:.0f} | {60 * count / seconds:.2f} "
            f"| {plain_seconds / seconds:.2f} | {notes} |",
            flush=True,
        )


def describe_machine():
    cpu_model = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    memory_gib = psutil.virtual_memory().total / 2**30
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"date (UTC): {datetime.now(timezone.utc):%Y-%m-%d %H:%M}\n"
        f"machine: {os.cpu_count()} CPUs ({cpu_model}), {memory_gib:.1f} GiB RAM, {platform.platform()}\n"
        f"Python {platform.python_version()}; load average at start: {load}"
    )


def parse_worker_counts(text):
    counts = [int(part) for part in text.split(",") if part.strip()]
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"expected worker counts of 1 or more, such as 1,2,3; got {text!r}")
    return counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--submissions", type=int, default=20, help="batch size N (default 20)")
    parser.add_argument(
        "--workers", type=parse_worker_counts, default=[1, 2, 3], help="comma-separated worker counts (default 1,2,3)"
    )
    parser.add_argument("--skip-per-submission", action="store_true", help="leave out the per-submission table")
    parser.add_argument("--skip-batch", action="store_true", help="leave out the batch table")
    parser.add_argument("--keep", action="store_true", help="keep the temporary courses and print where they are")
    args = parser.parse_args()

    env = benchmark_environment()
    print("$ python -m benchmarks.grading " + " ".join(sys.argv[1:]))
    print(describe_machine())
    started = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="grading-benchmark-"))
    try:
        if not args.skip_per_submission:
            per_submission(workdir, env)
        if not args.skip_batch:
            batch(workdir, env, args.submissions, args.workers)
    finally:
        if args.keep:
            print(f"\ncourses kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    print(f"\ntotal benchmark time: {time.perf_counter() - started:.0f} s; load average at the end: {load}")


if __name__ == "__main__":
    main()
