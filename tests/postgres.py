"""A throwaway PostgreSQL server for the tests: initdb into a temporary folder, pg_ctl start on 127.0.0.1.

It needs the server programs of Debian's ``postgresql`` package (``/usr/lib/postgresql/<version>/bin``),
or of another install on PATH. PostgreSQL refuses to run as root, so under root the server runs as the
``postgres`` user that the Debian package creates (``nobody`` without it). The server trusts every
connection, listens on 127.0.0.1 only, and skips fsync because its data is thrown away.
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

SUPERUSER = "grader"
START_TIMEOUT_SECONDS = 60


def find_server_bindir():
    """Return the folder with ``initdb``, ``pg_ctl`` and ``postgres``, or None when they are not installed.

    ``PG_BINDIR`` takes priority, then the newest ``/usr/lib/postgresql/<version>/bin``, then PATH.
    """
    candidates = [os.environ.get("PG_BINDIR", "")]
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(str(Path(initdb).resolve().parent))
    for folder in candidates:
        if folder and all(Path(folder, name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return Path(folder)
    return None


def _version_key(path):
    version = Path(path).parent.name
    return int(version) if version.isdigit() else -1


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PostgresServer:
    """A PostgreSQL server in a temporary data folder. ``start`` runs initdb and pg_ctl, ``stop`` removes it all."""

    def __init__(self, bindir):
        self.bindir = Path(bindir)
        self.port = None
        self.folder = None
        self.user = None

    def _run(self, *command):
        """Run a server program as the server's user, and raise with its output when it fails."""
        options = {}
        if self.user is not None:
            options = {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}
        completed = subprocess.run(
            [str(self.bindir / command[0]), *command[1:]],
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_SECONDS,
            **options,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed ({completed.returncode}):\n{completed.stdout}{completed.stderr}")
        return completed

    def start(self):
        if os.geteuid() == 0:
            try:
                self.user = pwd.getpwnam("postgres")
            except KeyError:
                self.user = pwd.getpwnam("nobody")
        # /tmp itself, because the server's user cannot enter pytest's folders, which are private to root.
        self.folder = Path(tempfile.mkdtemp(prefix="vgg11-postgres-"))
        if self.user is not None:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--no-instructions")

        self.port = _free_port()
        settings = (
            f"-c listen_addresses=127.0.0.1 -c port={self.port} -c unix_socket_directories={self.folder} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"), "-o", settings, "-w", "start")
        return self

    def stop(self):
        if self.folder is None:
            return
        try:
            self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def url(self, database="postgres"):
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name):
        """Create an empty database and return its SQLAlchemy URL."""
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)
