"""The PostgreSQL server for the multi-workstation tests: ``postgres_url``, one per test session.

* ``RADREVIEW_TEST_POSTGRES_URL`` set: that server (``postgresql+psycopg://user@host:port/db``).
* else, PostgreSQL's programs on this machine (``initdb``, ``pg_ctl``: Debian/Ubuntu's
  ``postgresql`` package, Fedora's ``postgresql-server``, Homebrew's ``postgresql``): a throwaway
  server on a temporary folder and a free port on 127.0.0.1, stopped and deleted at the end.
  As root it runs as the ``postgres`` account, since PostgreSQL refuses to run as root
  (the same steps as ``scripts/start_test_postgres.sh``).
* else the tests skip, naming the command that gets a server, or fail when ``CI`` is set: a CI
  run without the multi-workstation tests must not pass as if it had them.

Registered by ``tests/conftest.py``; the tests ask for ``postgres_url`` (through
``_readerstudy_support.postgres_database``, which makes a fresh database on it per test).
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

POSTGRES_ENV = "RADREVIEW_TEST_POSTGRES_URL"
INSTALL_HINT = (
    "install PostgreSQL (Debian/Ubuntu: `sudo apt-get install postgresql`, Fedora: `sudo dnf install "
    "postgresql-server`, macOS: `brew install postgresql`) and the tests start a throwaway server themselves, "
    f"or point {POSTGRES_ENV} at one: eval \"$(scripts/start_test_postgres.sh)\""
)
_SERVICE_ACCOUNT = "postgres"


class PostgresUnavailable(RuntimeError):
    """No server could be had: why, in a sentence."""


def find_bindir() -> Path | None:
    """The folder of initdb and pg_ctl: Debian's versioned folders (newest first), else PATH."""
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl", path=str(Path(initdb).parent)):
        return Path(initdb).parent
    return None


def _version_key(path: str) -> tuple[int, ...]:
    version = Path(path).parent.name
    return tuple(int(p) for p in version.split(".") if p.isdigit()) or (0,)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ThrowawayServer:
    """A PostgreSQL server on a temporary folder; ``stop()`` ends it and deletes the folder."""

    bindir: Path
    root: Path
    port: int
    run_as: tuple[str, ...]

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://radreview@127.0.0.1:{self.port}/radreview_test"

    def _run(self, program: str, *arguments: str, timeout: float = 120) -> None:
        command = [*self.run_as, str(self.bindir / program), *arguments]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            raise PostgresUnavailable(f"{program} failed ({result.returncode}): {result.stderr.strip()[-2000:]}"
                                      + (f"\nserver log: {tail}" if tail else ""))

    def start(self) -> None:
        # fsync off: a throwaway server for tests; durability across OS crashes is irrelevant here.
        self._run("initdb", "-D", str(self.data), "-U", "radreview", "-A", "trust", "--no-sync")
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c fsync=off "
                   "-c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "server.log"), "-w", "-t", "60",
                  "-o", options, "start")
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "radreview", "radreview_test")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def start_throwaway_server() -> ThrowawayServer:
    """Start a server with the PostgreSQL programs on this machine; raise PostgresUnavailable if none."""
    bindir = find_bindir()
    if bindir is None:
        raise PostgresUnavailable("PostgreSQL's initdb and pg_ctl are not on this machine")
    run_as: tuple[str, ...] = ()
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        if shutil.which("runuser") is None:
            raise PostgresUnavailable("running as root without runuser: cannot start PostgreSQL as another user")
        if subprocess.run(["id", _SERVICE_ACCOUNT], capture_output=True).returncode != 0:
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                            _SERVICE_ACCOUNT], check=True, capture_output=True)
        run_as = ("runuser", "-u", _SERVICE_ACCOUNT, "--")
    server = ThrowawayServer(bindir, Path(tempfile.mkdtemp(prefix="radreview-pg-")), _free_port(), run_as)
    try:
        server.root.chmod(0o755)
        if run_as:
            shutil.chown(server.root, user=_SERVICE_ACCOUNT)
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server for this session (see the module docstring)."""
    configured = os.environ.get(POSTGRES_ENV)
    if configured:
        yield configured
        return
    try:
        server = start_throwaway_server()
    except (PostgresUnavailable, OSError, subprocess.SubprocessError) as exc:
        reason = f"no PostgreSQL server: {exc}; {INSTALL_HINT}"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the PostgreSQL tests must run: {reason}")
        pytest.skip(reason)
    try:
        yield server.url
    finally:
        server.stop()
