"""Engine creation and migrations. Migrations run on start and are safe when several processes start at once:
PostgreSQL takes an advisory lock, SQLite a lock file beside the database."""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url

_MIGRATIONS = Path(__file__).with_name("migrations")
_ADVISORY_LOCK_KEY = 0x5049434D  # "PICM"


def make_engine(url: str, timeout_s: float = 10.0) -> Engine:
    """An engine that never waits forever: on PostgreSQL, connecting, each statement, a connection whose packets
    stop coming back (TCP user timeout and keepalives) and waiting for a pooled connection all give up after
    ``timeout_s``, so a stalled or unreachable server turns into a DatabaseError the caller can retry."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA foreign_keys=ON")  # cascades, as on PostgreSQL
            cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
            cursor.execute("PRAGMA busy_timeout=30000")
            cursor.close()

        return engine
    if parsed.get_backend_name() != "postgresql":
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    seconds = max(1, round(timeout_s))
    import psycopg2.extensions

    psycopg2.extensions.set_wait_callback(_wait_within_deadline)  # process-wide; idempotent
    engine = create_engine(
        url, pool_size=10, max_overflow=20, pool_timeout=timeout_s,
        connect_args={
            "connect_timeout": seconds,
            "options": f"-c statement_timeout={seconds * 1000} -c idle_in_transaction_session_timeout={seconds * 6000}",
            "keepalives": 1, "keepalives_idle": seconds, "keepalives_interval": 1, "keepalives_count": 3,
            "tcp_user_timeout": seconds * 1000,
        },
    )  # fmt: skip
    _ping_when_idle(engine)
    return engine


#: a pooled connection unused this long is pinged before it is handed out; one used more lately is trusted
IDLE_BEFORE_PING_S = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """SQLAlchemy's pool_pre_ping, but only for connections idle ``IDLE_BEFORE_PING_S``: a ping is a round trip,
    and with the database on another host every store call paid one (nine per job). A busy connection was seen
    working moments ago; if it broke since, its statement fails as retryable, and the pool drops every
    connection opened before (SQLAlchemy invalidates the pool on a disconnect), so the next try is fresh."""
    from sqlalchemy import exc

    @event.listens_for(engine, "connect")
    def _opened(_dbapi_connection, record) -> None:
        record.info["used_at"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_connection, record) -> None:
        if record is not None:
            record.info["used_at"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("used_at", 0.0) < IDLE_BEFORE_PING_S:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()
        except Exception as error:  # the pool replaces it (up to three tries) when told it is disconnected
            raise exc.DisconnectionError(f"stale connection: {error.__class__.__name__}") from error


_call_deadline = threading.local()


@contextmanager
def within(seconds: float) -> Iterator[None]:
    """Every wait for PostgreSQL in this thread, until the block ends, ends by ``seconds`` from now: one store call
    (a pooled connection's ping, the reconnect after it failed, the statements) keeps the documented timeout as a
    whole, not once per step."""
    outer = getattr(_call_deadline, "at", math.inf)
    _call_deadline.at = min(outer, time.monotonic() + seconds)
    try:
        yield
    finally:
        _call_deadline.at = outer


def _wait_within_deadline(connection) -> None:
    """psycopg2's wait callback: libpq's wait for the server, bounded by the connection's ``connect_timeout`` (the
    engine's ``timeout_s``) for every statement too, and by the store call's deadline (``within``). A server that
    stalls with the connection open (its kernel still acknowledging, so neither TCP timeout fires, and its own
    statement_timeout never runs) would otherwise hold the request for as long as the stall lasts; the connection
    is cut and the pool replaces it."""
    import psycopg2
    import psycopg2.extensions as ext

    try:
        seconds = float(connection.info.dsn_parameters.get("connect_timeout", 10))
    except (psycopg2.Error, ValueError):
        seconds = 10.0
    deadline = min(time.monotonic() + seconds, getattr(_call_deadline, "at", math.inf))
    poller = select.poll()
    registered = None
    while (state := connection.poll()) != ext.POLL_OK:
        if state not in (ext.POLL_READ, ext.POLL_WRITE):
            raise psycopg2.OperationalError(f"bad state from poll: {state}")
        wanted = select.POLLIN if state == ext.POLL_READ else select.POLLOUT
        if wanted != registered:
            poller.register(connection.fileno(), wanted)
            registered = wanted
        left = deadline - time.monotonic()
        if left <= 0 or not poller.poll(left * 1000):
            _cut(connection.fileno())
            raise psycopg2.OperationalError(
                f"server closed the connection unexpectedly: the database did not answer within {seconds:g} s"
            )


def _cut(fd: int) -> None:
    """End a connection's socket at once (closing the connection itself would wait for the server's answer)."""
    with contextlib.suppress(OSError), socket.socket(fileno=os.dup(fd)) as sock:
        sock.shutdown(socket.SHUT_RDWR)


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    return config


@contextmanager
def _migration_lock(engine: Engine):
    if engine.dialect.name == "postgresql":
        with engine.connect() as lock_connection:
            lock_connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_LOCK_KEY})
            try:
                yield
            finally:
                lock_connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_LOCK_KEY})
                lock_connection.commit()
    elif engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        with open(f"{engine.url.database}.migrate.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    else:
        yield


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "the migrations folder has no revision"
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the schema to the newest revision (a no-op when it is there already); returns that revision."""
    with _migration_lock(engine):
        if current_revision(engine) != head_revision():
            config = _alembic_config()
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
    return head_revision()
