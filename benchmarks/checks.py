"""Print how long the hidden tests take on one model, their peak memory, and the share of mutants caught.

Run from the repository root:  python -m benchmarks.checks [--mutants]
The first check in a process also pays for importing torch.export (a few seconds), so the
script reports the first (cold) and a second (warm) run separately. It also times what grading adds
per submission: writing the hand-in in the kernel and judging it in a new process (``autograder.judge``).
"""

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

from autograder import analysis, checks, handin
from autograder.course import TEST_CELLS
from tests.mutants import VARIANTS, systematic_mutants

HIDDEN_CHECKS = (checks.layer_findings, checks.pool_findings, checks.classifier_findings)


def hidden_run(model_cls):
    started = time.perf_counter()
    for findings_of in HIDDEN_CHECKS:
        findings_of(model_cls, hidden=True)
    return time.perf_counter() - started


def hand_in_and_judge(model_cls):
    """Return (seconds to hand in the three VGG11 cells, seconds to judge them in a new process, kB written)."""
    with tempfile.TemporaryDirectory() as folder:
        os.environ[handin.HANDIN_DIR_VARIABLE] = folder
        started = time.perf_counter()
        for cell in TEST_CELLS[:3]:
            handin.hand_in(cell, model_cls)
        written = time.perf_counter() - started
        del os.environ[handin.HANDIN_DIR_VARIABLE]
        size = sum(entry.stat().st_size for entry in os.scandir(folder)) / 1000

        started = time.perf_counter()
        subprocess.run([sys.executable, "-P", "-m", "autograder.judge", folder], check=True, capture_output=True)
        return written, time.perf_counter() - started, size


def peak_rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def mutant_share():
    mutants = systematic_mutants()
    caught = 0
    for mutant in mutants:
        model_cls = mutant.build_class()
        if any(f(model_cls) for f in HIDDEN_CHECKS) or any(f(model_cls, hidden=True) for f in HIDDEN_CHECKS):
            caught += 1
        else:
            print(f"  survived: {mutant.name}")
    return caught, len(mutants)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutants", action="store_true", help="also grade every systematic mutant (minutes)")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    model_cls = VARIANTS[0].build_class()
    cold = hidden_run(model_cls)
    analysis.clear_cache()
    warm = hidden_run(VARIANTS[1].build_class())
    print(f"hidden tests on one model: cold {cold:.2f} s, warm {warm:.2f} s")
    print(f"peak resident memory: {peak_rss_mib():.0f} MiB")
    written, judged, size = hand_in_and_judge(VARIANTS[1].build_class())
    print(f"hand-in of the VGG11 cells: {written:.2f} s, {size:.0f} kB; judge in a new process: {judged:.2f} s")
    if args.mutants:
        caught, total = mutant_share()
        print(f"mutants caught: {caught}/{total} ({100 * caught / total:.1f}%)")


if __name__ == "__main__":
    main()
