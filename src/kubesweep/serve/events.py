"""Events from the sweeps' threads to the page: a broker, and the server-sent-event stream.

Sweep threads (runs.Manager's hooks) call ``Broker.publish`` at any time; each subscriber (an
open ``GET /api/events``) has a bounded queue on the event loop. A subscriber that falls
``QUEUE`` events behind (a stalled browser tab, a slow link) is dropped rather than left to
grow the server's memory: its stream ends, and EventSource reconnects and reloads the state
from the JSON routes.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

#: Events a subscriber may be behind before it is dropped.
QUEUE = 10_000
_CLOSED = object()


class Subscription:
    """One subscriber's queue: an async iterator of (event, data) that ends when it is dropped."""

    def __init__(self, broker: Broker, loop: asyncio.AbstractEventLoop, size: int):
        self.broker = broker
        self.loop = loop
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=size + 1)  # +1: room for the end mark
        self.size = size
        self.dropped = False

    def _put(self, item: Any) -> None:  # on the event loop
        if self.dropped:
            return
        if self.queue.qsize() >= self.size:  # too far behind: end its stream instead of growing
            self.dropped = True
            self.broker._forget(self)
            self.queue.put_nowait(_CLOSED)
            return
        self.queue.put_nowait(item)

    async def get(self, timeout: float | None = None) -> tuple[str, dict[str, Any]] | None:
        """The next event; None after ``timeout`` seconds without one; StopAsyncIteration once dropped."""
        try:
            item = await asyncio.wait_for(self.queue.get(), timeout)
        except asyncio.TimeoutError:
            return None
        if item is _CLOSED:
            raise StopAsyncIteration
        return item

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> tuple[str, dict[str, Any]]:
        item = await self.get()
        assert item is not None
        return item

    def close(self) -> None:
        self.broker._forget(self)


class Broker:
    """Thread-safe publish, asyncio subscribers with bounded queues."""

    def __init__(self, queue: int = QUEUE):
        self._lock = threading.Lock()
        self._subs: set[Subscription] = set()
        self._size = queue
        self.dropped = 0  # subscribers dropped for falling behind

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Hand (event, data) to every subscriber; callable from any thread, never blocks."""
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            try:
                sub.loop.call_soon_threadsafe(sub._put, (event, data))
            except RuntimeError:  # its event loop is closed: the server is stopping
                self._forget(sub)

    def subscribe(self) -> Subscription:
        """A new subscriber on the running event loop; ``close()`` it when done."""
        sub = Subscription(self, asyncio.get_running_loop(), self._size)
        with self._lock:
            self._subs.add(sub)
        return sub

    def _forget(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.discard(sub)
                if sub.dropped:
                    self.dropped += 1

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)
