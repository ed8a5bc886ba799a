"""Job endings told by PostgreSQL: a trigger (migration 0013) notifies channel ``picmetric_jobs`` with a job's id
when the job ends (done, failed) or is deleted, at the commit that ends it. ``JobEndings`` listens on a connection of
its own, so a process whose requests wait for jobs learns of each end at once, instead of asking the database again
and again."""

from __future__ import annotations

import contextlib
import logging
import select
import threading
from collections.abc import Callable

from sqlalchemy import Engine

from picmetric.storage.db import within

logger = logging.getLogger(__name__)
CHANNEL = "picmetric_jobs"


class JobEndings:
    """A thread that calls ``on_ended(job_id)`` for every job that ends, and ``on_connected()`` each time it has
    (re)connected and listens: notifications sent while it was away are lost, so the caller asks once then about
    the jobs it still waits for. A silent connection is found by a ``SELECT 1`` after ``timeout_s`` without news
    (bounded by the same timeout), and replaced."""

    def __init__(self, engine: Engine, on_ended: Callable[[str], None], on_connected: Callable[[], None],
                 timeout_s: float) -> None:  # fmt: skip
        self._engine, self._on_ended, self._on_connected = engine, on_ended, on_connected
        self._timeout_s = timeout_s
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="picmetric-job-endings", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(self._timeout_s + 2)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stopping.is_set():
            connection = None
            try:
                with within(self._timeout_s):
                    pooled = self._engine.raw_connection()
                    connection = pooled.driver_connection
                    assert connection is not None, "a new pooled connection has its driver's"
                    pooled.detach()  # this thread's for good: the pool neither resets nor hands it out
                    connection.autocommit = True
                    with connection.cursor() as cursor:
                        cursor.execute(f"LISTEN {CHANNEL}")
                backoff = 0.5
                self._on_connected()
                self._listen(connection)
            except Exception as exc:  # the database away, or gone mid-wait: connect again, backing off
                logger.info("job endings: %s (%s); listening again in %.1f s", exc.__class__.__name__, exc, backoff)
            finally:
                if connection is not None:
                    with contextlib.suppress(Exception):
                        connection.close()
            self._stopping.wait(backoff)
            backoff = min(5.0, backoff * 2)

    def _listen(self, connection) -> None:
        while not self._stopping.is_set():
            readable, _, _ = select.select([connection], [], [], self._timeout_s)
            if not readable:
                with within(self._timeout_s), connection.cursor() as cursor:
                    cursor.execute("SELECT 1")  # still there? (a stalled server answers nothing)
            connection.poll()
            while connection.notifies:
                self._on_ended(connection.notifies.pop(0).payload)
