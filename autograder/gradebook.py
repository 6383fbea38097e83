"""The gradebook that every nbgrader process and every read of one grading run uses: URL and course id.

nbgrader 0.9.6 opens the gradebook with ``sqlalchemy.create_engine(CourseDirectory.db_url)`` in each
process, and each ``nbgrader autograde`` process writes its student's rows in short transactions.
With SQLite, a process that finds the database locked by another writer waits for the busy timeout
of Python's ``sqlite3`` module, 5 s by default, and then fails with "database is locked". Parallel
workers on a loaded machine can hold the lock that long, so ``with_busy_timeout`` puts a longer
timeout into SQLite URLs. SQLAlchemy's pysqlite dialect passes the URL's ``timeout`` query
parameter on to ``sqlite3.connect``.

A PostgreSQL gradebook (``postgresql+psycopg://user@host:5432/database``) needs no such setting,
and it is the one to use when graders on several machines share one gradebook.
"""

from dataclasses import dataclass

from sqlalchemy.engine import make_url

# nbgrader's apps open the gradebook with CourseDirectory.course_id, which is "" unless configured,
# and store it in each assignment row. PostgreSQL rejects "" there because assignment.course_id
# references course.id and nbgrader creates no course row for "". SQLite accepts it because it
# does not check foreign keys by default. So every nbgrader step gets nbgrader.api.Gradebook's
# default course id, which the reads in autograder.report also use.
DEFAULT_COURSE_ID = "default_course"

# Maximum wait in seconds for another process's SQLite write transaction. nbgrader's transactions
# take milliseconds on an idle machine, so a wait this long means that a process stopped while it
# held the lock.
SQLITE_BUSY_TIMEOUT_SECONDS = 300


def is_sqlite(db_url):
    return make_url(db_url).get_backend_name() == "sqlite"


def with_busy_timeout(db_url, seconds=SQLITE_BUSY_TIMEOUT_SECONDS):
    """Return ``db_url`` with a SQLite busy timeout of ``seconds``.

    Returns the URL unchanged for other databases and for a SQLite URL that already sets ``timeout``.
    """
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite" or "timeout" in url.query:
        return db_url
    return url.update_query_dict({"timeout": f"{seconds:g}"}).render_as_string(hide_password=False)


def display_url(db_url):
    """Return ``db_url`` with its password replaced by ``***``, for logs and messages."""
    return make_url(db_url).render_as_string(hide_password=True)



@dataclass(frozen=True)
class GradebookLocation:
    """The gradebook of one grading run: its database URL and the course id of nbgrader's rows."""

    db_url: str
    course_id: str = DEFAULT_COURSE_ID

    @classmethod
    def of_course(cls, coursedir):
        """Return the location that nbgrader_config.py sets, with a busy timeout for SQLite."""
        return cls(with_busy_timeout(coursedir.db_url), coursedir.course_id or DEFAULT_COURSE_ID)

    def nbgrader_options(self):
        """Return the nbgrader command-line options that select this gradebook over nbgrader_config.py."""
        return [f"--CourseDirectory.db_url={self.db_url}", f"--CourseDirectory.course_id={self.course_id}"]

    def __str__(self):
        return f"{display_url(self.db_url)} (course id {self.course_id})"
