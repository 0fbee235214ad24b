"""Group commit: concurrent requests share one queue write (docs/architecture.md §8).

The first request of a group opens a window of ``window_s``; requests arriving within it
(or until ``max_events`` are waiting) are published together as one envelope. Every request
still answers only once its own events are durable in the queue, and a request's events are
never split across envelopes, so each request stays all or nothing.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable, Sequence

from starlette.concurrency import run_in_threadpool

from sluice.producer.envelope import MAX_ENVELOPE_EVENTS
from sluice.producer.events import Event

Publish = Callable[[Sequence[Event]], list[str]]


class GroupCommitter:
    def __init__(
        self, publish: Publish, *, window_s: float, max_events: int = MAX_ENVELOPE_EVENTS
    ) -> None:
        self._publish = publish
        self._window_s = window_s
        self._max_events = max_events
        self._waiting: list[tuple[Sequence[Event], asyncio.Future[list[str]]]] = []
        self._waiting_events = 0
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    async def submit(self, events: Sequence[Event]) -> list[str]:
        """Queue ``events`` with whatever else arrives within the window; their ids."""
        if len(events) > self._max_events:
            raise ValueError(f"at most {self._max_events} events per request")
        if self._waiting_events + len(events) > self._max_events:
            self._flush()
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._waiting.append((events, future))
        self._waiting_events += len(events)
        if self._waiting_events >= self._max_events:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._window_s, self._flush)
        return await future

    async def drain(self) -> None:
        """Write what is waiting and wait for every write under way (at shutdown)."""
        self._flush()
        if self._flushes:
            await asyncio.gather(*self._flushes, return_exceptions=True)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiting:
            return
        group, self._waiting, self._waiting_events = self._waiting, [], 0
        # A context of its own: the group holds several requests' events, and its log lines
        # must not carry the ids the request that flushed it bound (sluice.logs).
        task = asyncio.get_running_loop().create_task(
            self._commit(group), context=contextvars.Context()
        )
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _commit(self, group: list[tuple[Sequence[Event], asyncio.Future[list[str]]]]) -> None:
        events = [event for request, _ in group for event in request]
        try:
            message_ids = await run_in_threadpool(self._publish, events)
        except BaseException as exc:  # cancelled too: no request may wait forever
            failure = exc if isinstance(exc, Exception) else RuntimeError("publish cancelled")
            for _, future in group:
                if not future.done():
                    future.set_exception(failure)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for request, future in group:
            if not future.done():
                future.set_result(message_ids[start : start + len(request)])
            start += len(request)
