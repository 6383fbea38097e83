"""The local worker pool of the grading app, with a stand-in for the grading unit that only sleeps."""

import threading
import time
from types import SimpleNamespace

import pytest

from autograder import workers


class FakeUnit:
    """A stand-in for ``grade_submission`` that sleeps ``job.seconds`` and counts the jobs running at once."""

    def __init__(self):
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.started = []

    def __call__(self, job):
        with self.lock:
            self.running += 1
            self.max_running = max(self.max_running, self.running)
            self.started.append(job.student_id)
        time.sleep(job.seconds)
        with self.lock:
            self.running -= 1
        if job.error:
            raise RuntimeError(f"unit failed for {job.student_id}")
        return f"row of {job.student_id}"


def _jobs(*seconds, error_for=()):
    return [
        SimpleNamespace(student_id=f"s{index}", seconds=value, error=f"s{index}" in error_for)
        for index, value in enumerate(seconds)
    ]


@pytest.fixture
def unit(monkeypatch):
    fake = FakeUnit()
    monkeypatch.setattr(workers, "grade_submission", fake)
    return fake


def test_one_worker_keeps_order(unit):
    jobs = _jobs(0.05, 0.01, 0.02)
    finished = [(job.student_id, outcome) for job, outcome in workers.grade_locally(jobs, 1)]
    assert finished == [("s0", "row of s0"), ("s1", "row of s1"), ("s2", "row of s2")]
    assert unit.max_running == 1


def test_pool_runs_k_at_once(unit):
    jobs = _jobs(0.3, 0.3, 0.3, 0.3, 0.3, 0.3)
    outcomes = dict((job.student_id, outcome) for job, outcome in workers.grade_locally(jobs, 3))
    assert outcomes == {job.student_id: f"row of {job.student_id}" for job in jobs}
    assert unit.max_running == 3


def test_pool_yields_in_finish_order(unit):
    jobs = _jobs(0.6, 0.05)
    finished = [job.student_id for job, _ in workers.grade_locally(jobs, 2)]
    assert finished == ["s1", "s0"]


@pytest.mark.parametrize("worker_count", [1, 2])
def test_unit_error_becomes_outcome(unit, worker_count):
    jobs = _jobs(0.01, 0.01, error_for={"s0"})
    outcomes = dict((job.student_id, outcome) for job, outcome in workers.grade_locally(jobs, worker_count))
    assert isinstance(outcomes["s0"], RuntimeError)
    assert "s0" in str(outcomes["s0"])
    assert outcomes["s1"] == "row of s1"


def test_closing_cancels_waiting_jobs(unit):
    jobs = _jobs(0.2, 0.2, 0.2, 0.2, 0.2)
    results = workers.grade_locally(jobs, 2)
    next(results)
    results.close()
    assert unit.running == 0
    assert len(unit.started) < len(jobs)


def test_zero_workers_rejected(unit):
    with pytest.raises(ValueError, match="at least 1"):
        list(workers.grade_locally(_jobs(0.01), 0))
