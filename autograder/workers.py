"""Run the grading unit for many students on this machine, one at a time or with K workers at once.

Each worker is a thread that waits for its student's ``nbgrader autograde`` process, which does the
work. Threads are enough because every notebook runs in its own nbgrader process and kernel, and
the worker only reads a few gradebook rows afterwards. The backends here and in
``autograder.distributed`` yield ``(job, outcome)`` pairs in the order in which students finish.
``outcome`` is the ``report.StudentResult`` or the exception that ``grade_submission`` raised.
"""

from concurrent.futures import ThreadPoolExecutor, as_completed

from .autograde import grade_submission


def grade_locally(jobs, workers=1):
    """Yield ``(job, outcome)`` for each ``AutogradeJob``, grading up to ``workers`` students at once.

    Closing the generator early cancels the students that have not started. It returns after the
    students that are being graded finish, because their nbgrader processes run on regardless.
    """
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if workers == 1:
        for job in jobs:
            yield job, _grade_or_error(job)
        return

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="autograde")
    try:
        futures = {pool.submit(grade_submission, job): job for job in jobs}
        for future in as_completed(futures):
            error = future.exception()
            yield futures[future], error if error is not None else future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _grade_or_error(job):
    try:
        return grade_submission(job)
    except Exception as error:  # noqa: BLE001 (the caller reports it in the student's row)
        return error
