"""Run the grading unit on a Dask distributed cluster: a running scheduler, or a LocalCluster started here.

Each student is one Dask task that calls ``autograder.autograde.grade_submission`` on a worker, so
results equal those of the local backends. A worker needs this repository on its PYTHONPATH, the
course root at the same path as the machine that submits the batch (a shared file system such as
NFS), and the same Python packages. Workers on several machines need a gradebook that they all
reach, such as PostgreSQL, because SQLite is one file that only one machine should write.
"""

from contextlib import contextmanager

from .autograde import grade_submission

# Time in seconds to wait for the scheduler's first worker before the batch is given up.
WAIT_FOR_WORKERS_SECONDS = 120


class ClusterUnavailable(Exception):
    """The Dask scheduler cannot be reached, or no worker joined it in time."""


@contextmanager
def connect(scheduler_address=None, local_workers=0):
    """Return a ``distributed.Client`` of the scheduler at ``scheduler_address``, or of a new LocalCluster.

    The LocalCluster has ``local_workers`` worker processes with one thread each, listens on
    127.0.0.1 only and has no dashboard. Raises ``ClusterUnavailable`` when the scheduler cannot be
    reached, or when no worker joins it within ``WAIT_FOR_WORKERS_SECONDS``.
    """
    # Imported here because importing distributed takes about a second, which the local backends skip.
    from distributed import Client, LocalCluster

    if scheduler_address:
        try:
            client = Client(scheduler_address)
        except OSError as error:
            raise ClusterUnavailable(
                f"Failed to connect to the Dask scheduler at {scheduler_address}: {error}. "
                "Check the address, and that `dask scheduler` runs there and accepts connections from this machine."
            ) from error
        with client:
            try:
                client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_SECONDS)
            except TimeoutError as error:
                raise ClusterUnavailable(
                    f"No Dask worker joined the scheduler at {scheduler_address} within {WAIT_FOR_WORKERS_SECONDS} s. "
                    f"Start workers with `dask worker {scheduler_address}`."
                ) from error
            yield client
        return

    with LocalCluster(
        n_workers=local_workers,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster, Client(cluster) as client:
        yield client


def worker_count(client):
    return len(client.scheduler_info(n_workers=-1)["workers"])


def grade_on_dask(client, jobs):
    """Yield ``(job, outcome)`` for each ``AutogradeJob`` as its Dask task finishes.

    ``outcome`` is the ``report.StudentResult``, or the exception that the task raised, such as
    ``distributed.KilledWorker`` after workers died while grading it.
    """
    # NOTE: when a worker dies, Dask runs its task again on another worker. The first nbgrader process
    # may still be running, because it has a session of its own, and write to the same student's rows.
    futures = client.map(grade_submission, jobs, pure=False)
    jobs_by_key = {future.key: job for future, job in zip(futures, jobs)}

    from distributed import as_completed

    for future in as_completed(futures):
        job = jobs_by_key[future.key]
        try:
            yield job, future.result()
        except Exception as error:  # noqa: BLE001 (the caller reports it in the student's row)
            yield job, error
