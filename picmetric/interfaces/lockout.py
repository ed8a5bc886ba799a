"""Back-off for wrong guesses of the teacher's (admin) token, per client: the dashboard's unlock and the API's admin
routes. A few wrong tries are free (a typo); after that each wrong try doubles the wait before the next is even
looked at, so guessing costs hours instead of seconds. Kept in the process's memory: a restart forgets it."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

#: wrong tries in a row that cost nothing
FREE_TRIES = 5
FIRST_WAIT_S = 30.0
LONGEST_WAIT_S = 15 * 60.0
#: clients remembered at once; the longest-quiet are forgotten first
MAX_CLIENTS = 10_000


@dataclass
class _Tries:
    wrong: int = 0
    locked_until: float = 0.0


class Lockout:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._clients: OrderedDict[str, _Tries] = OrderedDict()
        self._lock = threading.Lock()

    def wait_left(self, client: str) -> float:
        """Seconds before ``client`` may try a token again; 0 when it may now."""
        with self._lock:
            tries = self._clients.get(client)
            return max(0.0, tries.locked_until - self._clock()) if tries else 0.0

    def failed(self, client: str) -> float:
        """Count a wrong token; the seconds ``client`` must now wait (0 while its tries are free)."""
        with self._lock:
            tries = self._clients.pop(client, None) or _Tries()
            self._clients[client] = tries  # the most recent last
            while len(self._clients) > MAX_CLIENTS:
                self._clients.popitem(last=False)
            tries.wrong += 1
            if tries.wrong < FREE_TRIES:
                return 0.0
            wait = min(LONGEST_WAIT_S, FIRST_WAIT_S * 2 ** (tries.wrong - FREE_TRIES))
            tries.locked_until = self._clock() + wait
            return wait

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._clients.pop(client, None)


def locked_message(wait_s: float) -> str:
    return f"too many wrong tokens from this address: try again in {wait_s:.0f} s"
