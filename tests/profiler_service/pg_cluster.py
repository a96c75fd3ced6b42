"""A PostgreSQL cluster of the test's own (initdb, pg_ctl) on a free loopback port, to stop and start at will.

As root, the cluster runs as the ``postgres`` system user (PostgreSQL refuses to run as root)."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from glob import glob
from pathlib import Path


def pg_bin() -> Path | None:
    """The newest installed server's bin directory, or the one on PATH."""
    found = sorted(glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(p.split("/")[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("pg_ctl")
    return Path(on_path).parent if on_path else None


@dataclass
class PgCluster:
    bin_dir: Path
    root: Path
    port: int
    user: str | None  # the system user the server runs as; None: this process's

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def _run(self, *args: str) -> None:
        kwargs = {} if self.user is None else {"user": self.user, "group": pwd.getpwnam(self.user).pw_gid,
                                               "extra_groups": []}
        subprocess.run([str(self.bin_dir / args[0]), *args[1:]], check=True, capture_output=True, timeout=120,
                       cwd=self.root, **kwargs)

    def init(self) -> PgCluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        return self

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.root / "server.log"), "-w",
                  "start")

    def stop(self) -> None:
        """A fast shutdown: open sessions are terminated, as when an operator restarts the database."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # not running
        shutil.rmtree(self.root, ignore_errors=True)


def new_cluster(port: int) -> PgCluster | None:
    """An initialised, stopped cluster in a fresh directory that will listen on ``port``; None where no
    PostgreSQL server is installed."""
    bin_dir = pg_bin()
    if bin_dir is None:
        return None
    user = None
    root = Path(tempfile.mkdtemp(prefix="profiler-pg-"))
    if os.geteuid() == 0:
        user = "postgres"
        entry = pwd.getpwnam(user)
        os.chown(root, entry.pw_uid, entry.pw_gid)
    return PgCluster(bin_dir, root, port, user).init()
