"""A throwaway PostgreSQL server for the study tests: a fresh cluster (initdb) in a temporary
folder, listening on a free loopback port, stopped and deleted afterwards. The server binaries
come from the machine (Debian: apt-get install -y postgresql); as root, they run as the
``postgres`` user, since PostgreSQL refuses to run as root."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.loopback import free_port


def server_binaries() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``, or None when PostgreSQL is not installed."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]).parent if versions else None


@contextmanager
def postgres_database(name: str) -> Iterator[str]:
    """A running server with an empty database ``name``; yields its SQLAlchemy URL."""
    binaries = server_binaries()
    assert binaries is not None, "PostgreSQL server binaries not found"
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="deepemocluster-pg-"))
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        user = pwd.getpwnam("postgres")
        os.chown(folder, user.pw_uid, user.pw_gid)
    data, port = folder / "data", free_port()

    def pg(tool: str, *args: str) -> None:
        """Run a server tool; a failure shows what it printed."""
        done = subprocess.run(
            [*as_user, str(binaries / tool), *args], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"{tool} failed: {done.stdout}{done.stderr}"

    try:
        pg("initdb", "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
        options = f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(folder / "server.log")
        pg("pg_ctl", "-D", str(data), "-o", options, "-l", log, "-w", "start")
        try:
            pg("createdb", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", name)
            yield f"postgresql://postgres@127.0.0.1:{port}/{name}"
        finally:
            pg("pg_ctl", "-D", str(data), "-m", "immediate", "stop")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
