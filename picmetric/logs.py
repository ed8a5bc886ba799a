"""Recent application log lines kept in memory, for the System page and the API's /log (the seed's nohup.out)."""

from __future__ import annotations

import logging
import threading
from collections import deque

_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_lines: deque[str] = deque(maxlen=1000)
_install_lock = threading.Lock()


class _MemoryHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            _lines.append(self.format(record))
        except Exception:  # a broken log record must never break a request
            self.handleError(record)


def install(level: int = logging.INFO) -> None:
    """Keep PicMetric's log lines (idempotent: safe to call on every Streamlit rerun)."""
    logger = logging.getLogger("picmetric")
    with _install_lock:
        if not any(isinstance(h, _MemoryHandler) for h in logger.handlers):
            handler = _MemoryHandler()
            handler.setFormatter(logging.Formatter(_FORMAT, "%Y-%m-%d %H:%M:%S"))
            logger.addHandler(handler)
        logger.setLevel(level)


def recent_lines(limit: int = 200) -> list[str]:
    return list(_lines)[-limit:]
