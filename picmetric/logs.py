"""Recent application log lines kept in memory, for the System page and the API's /log (the seed's nohup.out)."""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections import deque

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_lines: deque[str] = deque(maxlen=1000)
#: lines not yet written to the database, where the System page reads every process' lines (workers' too)
_unshipped: deque[str] = deque(maxlen=1000)
_install_lock = threading.Lock()


class _MemoryHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:  # a broken log record must never break a request
            self.handleError(record)
            return
        _lines.append(line)
        _unshipped.append(line)


def install(level: int = logging.INFO) -> None:
    """Keep PicMetric's log lines, and the warnings of the Celery worker around it (a broker's refusal is said
    there); idempotent: safe to call on every Streamlit rerun."""
    with _install_lock:
        for name, name_level in (("picmetric", level), ("celery", logging.WARNING)):
            logger = logging.getLogger(name)
            if not any(isinstance(h, _MemoryHandler) for h in logger.handlers):
                handler = _MemoryHandler(name_level)
                handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
                logger.addHandler(handler)
        logging.getLogger("picmetric").setLevel(level)


def process_name() -> str:
    """host:pid, as job rows and shared log lines name the process (a forked worker has its own pid)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def recent_lines(limit: int = 200) -> list[str]:
    return list(_lines)[-limit:]


def take_unshipped() -> list[str]:
    """The lines logged since the last call, for the database (the caller writes them; lost when it cannot)."""
    taken = []
    while _unshipped:
        taken.append(_unshipped.popleft())
    return taken


def clear() -> None:
    """Forget the recent lines (a reset: they name uploads that no longer exist)."""
    _lines.clear()
    _unshipped.clear()


class RedactApiKey(logging.Filter):
    """uvicorn's access log prints each request's path with its query, so a key sent as ``?api_key=`` would land
    in every log file and log shipper; the line keeps the parameter with its value replaced."""

    _KEY = re.compile(r"(?i)([?&]api_key=)[^&#\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._KEY.sub(r"\1***", a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log() -> None:
    """Install ``RedactApiKey`` on uvicorn's access logger (idempotent)."""
    access = logging.getLogger("uvicorn.access")
    with _install_lock:
        if not any(isinstance(f, RedactApiKey) for f in access.filters):
            access.addFilter(RedactApiKey())
