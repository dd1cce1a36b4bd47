"""Small thread-safe limits for outgoing LLM requests: requests per minute and requests in flight.

Limits hold per process. Providers built with the same endpoint and limits
share one ``RequestLimits`` (``shared_limits``), so several Prefect tasks in
one process (the thread task runner) respect them together; separate
processes (Dask workers) each get their own and should be given a share.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager


class RateLimiter:
    """At most ``rate`` acquisitions within any sliding window of ``period`` seconds.

    ``clock`` and ``sleep`` are injectable so tests run deterministically without waiting.
    """

    def __init__(
        self,
        rate: int | None,
        period: float = 60.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate is not None and rate < 1:
            raise ValueError("rate must be at least 1 (or None for no limit)")
        self.rate, self.period = rate, period
        self._clock, self._sleep = clock, sleep
        self._starts: deque[float] = deque()
        self._lock = threading.Lock()

    def acquire(self) -> float:
        """Take a slot, sleeping until one is free; returns the seconds waited."""
        if self.rate is None:
            return 0.0
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                while self._starts and self._starts[0] <= now - self.period:
                    self._starts.popleft()
                if len(self._starts) < self.rate:
                    self._starts.append(now)
                    return waited
                delay = self._starts[0] + self.period - now
            self._sleep(delay)  # outside the lock: other threads may check meanwhile
            waited += delay


class RequestLimits:
    """A concurrency limit and a rate limit, taken together around each request."""

    def __init__(self, max_concurrency: int, requests_per_minute: int | None, *, rate_limiter: RateLimiter | None = None) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be at least 1")
        self.max_concurrency = max_concurrency
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self.rate = rate_limiter or RateLimiter(requests_per_minute, 60.0)

    @contextmanager
    def request(self) -> Iterator[None]:
        """Hold a concurrency slot, then a rate slot, for the duration of one HTTP request.

        The rate slot is taken last, so its time is when the request really starts.
        """
        with self._slots:
            self.rate.acquire()
            yield


_SHARED: dict[tuple[str, int, int | None], RequestLimits] = {}
_SHARED_LOCK = threading.Lock()


def shared_limits(endpoint: str, max_concurrency: int, requests_per_minute: int | None) -> RequestLimits:
    """One ``RequestLimits`` per (endpoint, limits) in this process."""
    key = (endpoint, max_concurrency, requests_per_minute)
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = RequestLimits(max_concurrency, requests_per_minute)
        return _SHARED[key]
