"""Opening a reader-study database: SQLite file by default, PostgreSQL for shared studies.

:func:`open_database` brings the schema to the newest Alembic revision before returning, under a
lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on PostgreSQL) so that several workstations
opening the same database at once do not race each other.

SQLite is opened in WAL mode with foreign keys enforced and ``synchronous=FULL``: a committed read
survives a crash or power loss. Every transaction starts with ``BEGIN IMMEDIATE`` so that
concurrent writers queue on the busy timeout instead of failing when a reader upgrades to a writer.

A SQLite study file is one trusted operator's: whoever can open the file can read and change
everything in it (the triggers and the audit chain make changes refused or visible, not
impossible). Separating readers from each other and from the truth against a determined person
needs PostgreSQL with one database role per reader (``docs/security_readerstudy.md``).

A signed-in reader works through a *reader handle* (:meth:`Database.reader_handle`): on
PostgreSQL its connections present the reader's sign-in token to row-level security; on both it
is marked as the reader's, and the coordinator's tools refuse it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session

log = logging.getLogger(__name__)
MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Any constant works; it only has to be the same for every radreview process.
_PG_MIGRATION_LOCK = 7_345_201
SQLITE_BUSY_TIMEOUT_S = 60.0
# The newest migration; a test checks it against the migrations folder.
HEAD_REVISION = "0003_ai_presentation"


class DatabaseError(RuntimeError):
    """The study database cannot be opened or used; the message names it and says why."""


def database_url(target: str | Path) -> str:
    """A SQLAlchemy URL for a file path or a URL (``postgresql://`` uses psycopg 3)."""
    value = str(target)
    if value.startswith("postgresql://") or value.startswith("postgres://"):
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    if "://" in value:
        return value
    return f"sqlite:///{Path(value).expanduser().resolve()}"


def _redacted(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
        # Let SQLAlchemy's "begin" event emit BEGIN itself (the pysqlite recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection) -> None:  # type: ignore[no-untyped-def]
        # Writers take the write lock up front; read-only work shares the WAL snapshot.
        readonly = connection.get_execution_options().get("radreview_readonly", False)
        connection.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


@dataclass
class Database:
    """An open study database. Use :meth:`transaction` for every unit of work."""

    url: str
    engine: Engine
    # Set on a signed-in reader's handle: the reader code (the coordinator's tools refuse it).
    reader: str | None = None
    _lock_file: IO[bytes] | None = field(default=None, repr=False)
    _parent: Database | None = field(default=None, repr=False)
    _handles: list[Database] = field(default_factory=list, repr=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self, *, readonly: bool = False) -> Iterator[Session]:
        """One committed transaction (rolled back on error).

        ``readonly`` transactions must not write: on SQLite they do not take the write lock, so
        many readers proceed while one process writes.
        """
        bind = self.engine.execution_options(radreview_readonly=True) if readonly else self.engine
        with self._writer_lock(readonly), Session(bind, expire_on_commit=False) as session:
            with session.begin():
                yield session

    def reader_handle(self, reader_code: str, token: str | None = None) -> Database:
        """A handle for one signed-in reader, sharing this database's lock (and, on SQLite, its
        engine). On PostgreSQL it has its own connections, each presenting ``token`` to the
        row-level security policies (``radreview.token``); closed with this database."""
        engine = self.engine
        if self.dialect == "postgresql" and token is not None:
            engine = create_engine(self.url, pool_pre_ping=True)

            @event.listens_for(engine, "connect")
            def _present_token(dbapi_connection, _record) -> None:  # type: ignore[no-untyped-def]
                with dbapi_connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('radreview.token', %s, false)", (token,))
                dbapi_connection.commit()

        handle = Database(self.url, engine, reader=reader_code, _parent=self)
        self._handles.append(handle)
        return handle

    @contextmanager
    def _writer_lock(self, readonly: bool) -> Iterator[None]:
        """Queue SQLite writers of all processes on an OS file lock.

        SQLite's own busy handler sleeps in growing steps (up to 100 ms) while another process
        writes; with several workstations saving at once most of the time went to sleeping.
        An flock wakes the next writer as soon as the lock is free. POSIX only; elsewhere the
        busy timeout alone serialises writers.
        """
        if readonly or fcntl is None or not self.url.startswith("sqlite:///"):
            yield  # PostgreSQL, or an in-memory SQLite database (one process only)
            return
        if self._parent is not None:  # one lock file per process: flock would block on a second one
            with self._parent._writer_lock(readonly):
                yield
            return
        if self._lock_file is None:
            path = Path(self.url.removeprefix("sqlite:///") + ".writelock")
            self._lock_file = open(path, "a+b")  # noqa: SIM115 - kept open for the life of the Database
        fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._lock_file.fileno(), fcntl.LOCK_UN)

    def close(self) -> None:
        for handle in self._handles:
            handle.close()
        self._handles.clear()
        if self._parent is not None and self.engine is self._parent.engine:
            return  # the engine is the parent's
        self.engine.dispose()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def __str__(self) -> str:
        return _redacted(self.url)


def open_database(target: str | Path, *, upgrade_schema: bool = True, must_exist: bool = False) -> Database:
    """Open the study database at a path or URL and migrate it to head.

    A new SQLite file is created unless ``must_exist`` (the tools that only read a study).
    """
    url = database_url(target)
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if not path.parent.is_dir():
            raise DatabaseError(f"{path}: the folder for the study database does not exist")
        if must_exist and not path.is_file():
            raise DatabaseError(f"{path}: no study database here (create one with 'radreview study create')")
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S})
        _configure_sqlite(engine)
    else:
        try:
            engine = create_engine(url, pool_pre_ping=True)
        except Exception as exc:  # a missing driver or a malformed URL
            raise DatabaseError(f"{_redacted(url)}: {driver_reason(exc)}") from exc
    db = Database(url, engine)
    if upgrade_schema:
        try:
            upgrade(db)
        except DatabaseError:
            raise
        except Exception as exc:
            engine.dispose()
            raise DatabaseError(f"{db}: cannot open the study database: {driver_reason(exc)}") from exc
    return db


def driver_reason(exc: BaseException) -> str:
    """The database driver's own words ("file is not a database"), without SQLAlchemy's wrapping
    and its link to a web page."""
    original = getattr(exc, "orig", None)
    return str(original) if original is not None else str(exc)


def _alembic_config(connection):  # type: ignore[no-untyped-def]
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    config = _alembic_config(None)
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


def current_revision(db: Database) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _recorded_revision(db: Database) -> str | None:
    """The revision in ``alembic_version``, read without importing Alembic (a reader's
    workstation opens an up-to-date database on every start; Alembic costs ~0.4 s to import)."""
    try:
        with db.engine.connect() as connection:
            return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    except Exception:  # no table yet: a new database
        return None


def upgrade(db: Database) -> None:
    """Run the Alembic migrations up to head, once, even with many processes opening at once."""
    if _recorded_revision(db) == HEAD_REVISION:
        return
    # Alembic's own INFO lines are noise on a coordinator's terminal.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger("alembic").level))
    from alembic import command
    from alembic.runtime.migration import MigrationContext

    head = head_revision()
    with db.engine.begin() as connection:
        if db.dialect == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        # Re-check under the lock: another process may have migrated meanwhile.
        if MigrationContext.configure(connection).get_current_revision() == head:
            return
        log.info("%s: creating or upgrading the reader-study schema to %s", db, head)
        command.upgrade(_alembic_config(connection), "head")


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal", ".writelock")


@contextmanager
def creating_database(target: str | Path) -> Iterator[Database]:
    """A database to create a study in that leaves nothing behind if the creation fails.

    A new SQLite file is built under a temporary name in the same folder and moved into place
    (``os.link``, which refuses to replace a file another process made meanwhile) only when the
    ``with`` block succeeds; on any failure, Ctrl+C included, the temporary file and its WAL,
    shared-memory and lock files are removed. An existing SQLite file or a PostgreSQL database is
    opened as usual: the study is created in one transaction, which rolls back on failure.
    """
    import os
    import uuid

    url = database_url(target)
    final = Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None
    if final is None or final.exists():
        db = open_database(target)
        try:
            yield db
        finally:
            db.close()
        return
    if not final.parent.is_dir():
        raise DatabaseError(f"{final}: the folder for the study database does not exist")
    temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex[:8]}.creating")
    db = None
    try:
        db = open_database(temporary)
        yield db
        db.close()  # the last connection closing folds the WAL into the file before it moves
        db = None
        try:
            os.link(temporary, final)
        except FileExistsError:
            raise DatabaseError(f"{final}: another process created this file meanwhile; nothing was written") from None
        except OSError:  # a file system without hard links: replace only if still absent
            if final.exists():
                raise DatabaseError(f"{final}: another process created this file meanwhile") from None
            os.replace(temporary, final)
    finally:
        if db is not None:
            db.close()
        for path in [temporary] + [Path(str(temporary) + suffix) for suffix in SQLITE_SIDE_FILES]:
            path.unlink(missing_ok=True)
