"""The deliverer: one asyncio event loop that claims due triggers in batches, acts on many
at once, and records the attempts in batches (docs/architecture.md §6).

- Claims: when woken (new triggers were committed, room was made, or a poll interval
  passed), it claims as many due triggers as it has room for: it holds at most
  ``concurrency`` triggers, and at most twice an automation's in-flight cap
  (``max_in_flight``) of one automation (``sluice.delivery.leases``). The second half
  waits in the deliverer, so that one claim serves many attempts.
- Attempts: each claimed trigger is one coroutine, and at most ``max_in_flight`` of an
  automation's are under way; a slow endpoint holds its own coroutines and connections,
  never the loop. Once an automation's attempts have made room for a full cap, the
  claimer is woken.
- Records: finished attempts are written together, as soon as the previous write is done.
- Retries wait with exponential backoff and jitter, at least ``Retry-After`` when the
  endpoint sent one (up to a day): the wait is the trigger's ``next_attempt_at``, so
  nothing waits in a queue.
- A failure of the database (a claim or a record) is logged and tried again; attempts
  whose record is lost with the process are attempted again once their lease ends, with
  the same ``webhook-id`` (at least once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from functools import partial
from typing import TypeVar

import aiohttp
from celery import Celery

from sluice.actions import ACTIONS, Attempt, AttemptResult, Outcome
from sluice.backoff import backoff_s
from sluice.delivery.leases import Attempted, Claimed, TriggerStore
from sluice.delivery.payload import trigger_body
from sluice.logs import bind
from sluice.producer.events import utc_now

log = logging.getLogger(__name__)

MAX_RETRY_AFTER_S = 86_400.0
CLAIM_BATCH = 200  # triggers claimed in one transaction at most
POLL_S = 1.0  # look for due triggers (retries) at least this often
GATHER_S = 0.01  # once woken, let more attempts finish (and wake-ups come) before claiming
PREFETCH = 2  # a deliverer holds up to this many times an automation's in-flight cap
HOUSEKEEPING_S = 30.0  # settle the triggers no claim will take this often
DATABASE_BACKOFF_BASE_S = 0.5  # a failed claim or record: the first wait
DATABASE_BACKOFF_CAP_S = 10.0  # and the longest
LEASE_MARGIN_S = 15.0  # an attempt starts only if it ends this long before its lease does
T = TypeVar("T")


def trigger_retry_delay_s(
    attempt: int, retry_after_s: float | None, base_s: float, cap_s: float
) -> float:
    """The wait before a trigger's next attempt: exponential (``base_s`` · 2^(attempt-1))
    with equal jitter, at most ``cap_s``, or ``Retry-After`` when the endpoint asks for
    longer (up to a day)."""
    asked_s = min(retry_after_s or 0.0, MAX_RETRY_AFTER_S)
    return max(backoff_s(attempt, base_s=base_s, cap_s=cap_s, jitter="equal"), asked_s)


def database_retry_delay_s(failures: int) -> float:
    """The wait after ``failures`` failed claims or records in a row: exponential with
    equal jitter, from ``DATABASE_BACKOFF_BASE_S`` up to ``DATABASE_BACKOFF_CAP_S``."""
    return backoff_s(
        failures, base_s=DATABASE_BACKOFF_BASE_S, cap_s=DATABASE_BACKOFF_CAP_S, jitter="equal"
    )


class Deliverer:
    """Claims, attempts and records triggers until ``stop`` is called."""

    def __init__(
        self,
        triggers: TriggerStore,
        http: aiohttp.ClientSession,
        app: Celery,
        *,
        concurrency: int,
        max_in_flight: int,
        allow_private: bool,
        backoff_base_s: float,
        max_backoff_s: float,
        attempt_timeout_s: float = 10.0,
        heartbeat: Callable[[], None] | None = None,
        count_statuses: Callable[[Mapping[str, int]], None] | None = None,
    ) -> None:
        self.triggers = triggers
        self.http = http
        self.app = app
        self.concurrency = concurrency
        self.max_in_flight = max_in_flight
        self.allow_private = allow_private
        self.backoff_base_s = backoff_base_s
        self.max_backoff_s = max_backoff_s
        self.attempt_timeout_s = attempt_timeout_s
        self.heartbeat = heartbeat  # called on every turn of the claim loop
        self.count_statuses = count_statuses  # the cluster-wide sluice_triggers_total
        self._wake = asyncio.Event()
        self._finished: list[Attempted] = []
        self._to_record = asyncio.Event()
        self._attempts: set[asyncio.Task[None]] = set()
        self._held: Counter[str] = Counter()  # claimed and not finished, by automation id
        self._unstarted: list[Claimed] = []  # claimed, not attempted: to give back
        self._slots: dict[str, asyncio.Semaphore] = {}  # attempts under way, by automation
        self._stopping = asyncio.Event()
        self._closing = False
        self._database = ThreadPoolExecutor(2, thread_name_prefix="sluice-deliverer-db")

    def wake(self) -> None:
        """Look for due triggers now (from the event loop's thread)."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self, grace_s: float) -> None:
        """Deliver until stopped; then give the attempts under way ``grace_s`` to finish,
        and record what finished."""
        recorder = asyncio.create_task(self._record_loop())
        try:
            await self._claim_loop()
            if self._attempts:  # those not started yet give their triggers back
                await asyncio.wait(set(self._attempts), timeout=grace_s)
        finally:
            for attempt in set(self._attempts):
                attempt.cancel()  # its lease runs out; it is attempted again then
            if self._attempts:
                await asyncio.wait(set(self._attempts))
            self._closing = True
            self._to_record.set()
            try:
                await asyncio.wait_for(asyncio.shield(recorder), timeout=grace_s + 5)
            except TimeoutError:
                log.error("%d finished attempts could not be recorded", len(self._finished))
                recorder.cancel()
            self._database.shutdown(wait=False)

    async def _claim_loop(self) -> None:
        housekeeping_at = time.monotonic()
        failures = 0
        while not self._stopping.is_set():
            if self.heartbeat is not None:
                self.heartbeat()
            room = self.concurrency - len(self._attempts)
            if room > 0:
                try:
                    claimed = await self._in_database(
                        partial(
                            self.triggers.claim_due,
                            utc_now(),
                            min(room, CLAIM_BATCH),
                            per_automation=PREFETCH * self.max_in_flight,
                            held=dict(self._held),
                        )
                    )
                    failures = 0
                except Exception:
                    failures += 1
                    log.exception("claiming triggers failed; trying again")
                    await self._sleep(database_retry_delay_s(failures))
                    continue
                for claim in claimed:
                    self._held[claim.automation.id] += 1
                    attempt = asyncio.create_task(self._attempt(claim))
                    self._attempts.add(attempt)
                    attempt.add_done_callback(self._attempts.discard)
                if time.monotonic() >= housekeeping_at:
                    housekeeping_at = time.monotonic() + HOUSEKEEPING_S
                    await self._housekeeping()
                if len(claimed) == min(room, CLAIM_BATCH):
                    continue  # there may be more due right now
            await self._pause(POLL_S)

    async def _housekeeping(self) -> None:
        try:
            await self._in_database(
                lambda: self._counted(self.triggers.settle_abandoned(utc_now()))
            )
        except Exception:
            log.exception("settling abandoned triggers failed; again in %.0fs", HOUSEKEEPING_S)

    async def _in_database(self, call: Callable[[], T]) -> T:
        """Run a blocking database call on the deliverer's own threads (not the loop's
        default pool, which DNS lookups and task publishes share)."""
        return await asyncio.get_running_loop().run_in_executor(self._database, call)

    async def _sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if stopped (a wake-up does not cut a back-off short)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=seconds)

    async def _pause(self, seconds: float) -> None:
        """Wait ``seconds`` or until woken, whichever comes first; once woken, a moment
        more, so that one claim takes what several finished attempts made room for."""
        if not self._wake.is_set():
            timer = asyncio.get_running_loop().call_later(seconds, self._wake.set)
            await self._wake.wait()
            timer.cancel()
        if not self._stopping.is_set():
            await asyncio.sleep(GATHER_S)
        self._wake.clear()

    async def _attempt(self, claim: Claimed) -> None:
        automation_id = claim.automation.id
        bind(  # this attempt's task only (sluice.logs)
            trigger_id=claim.trigger_id,
            message_id=claim.event.get("message_id"),
            workspace_id=claim.automation.workspace_id,
        )
        slots = self._slots.get(automation_id)
        if slots is None:
            slots = self._slots[automation_id] = asyncio.Semaphore(self.max_in_flight)
        started = False
        try:
            async with slots:
                if self._stopping.is_set() or not self._lease_holds(claim):
                    self._unstarted.append(claim)  # given back: nothing was sent
                    self._to_record.set()
                    return
                started, started_at = True, utc_now()
                outcome = await self._outcome(claim)
        except asyncio.CancelledError:
            if not started:
                self._unstarted.append(claim)
            raise
        finally:
            self._held[automation_id] -= 1
            held = self._held[automation_id]
            if held <= 0:
                del self._held[automation_id], self._slots[automation_id]
            if held == self.max_in_flight * (PREFETCH - 1):
                self.wake()  # room for a full cap of this automation
        delay_s = trigger_retry_delay_s(
            claim.attempt, outcome.retry_after_s, self.backoff_base_s, self.max_backoff_s
        )
        self._finished.append(Attempted(claim, outcome, started_at, delay_s))
        self._to_record.set()
        if outcome.result is not AttemptResult.DELIVERED:
            log.info(
                "trigger %s attempt %d (%s %s): %s (%s)",
                claim.trigger_id,
                claim.attempt,
                claim.automation.action,
                claim.automation.id,
                outcome.result,
                outcome.error,
            )

    def _lease_holds(self, claim: Claimed) -> bool:
        """Whether an attempt started now ends within the claim's lease (one that waited
        long for its automation's room may not: another deliverer may take it then)."""
        ends = utc_now() + timedelta(seconds=self.attempt_timeout_s + LEASE_MARGIN_S)
        return claim.leased_until is None or ends < claim.leased_until

    async def _outcome(self, claim: Claimed) -> Outcome:
        try:
            return await ACTIONS[claim.automation.action].attempt(self._attempt_of(claim))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # recorded like any failed attempt, never lost in a crash
            log.exception("trigger %s: the attempt failed unexpectedly", claim.trigger_id)
            return Outcome(AttemptResult.RETRY, 0, error=f"{type(exc).__name__}: {exc}")

    def _attempt_of(self, claim: Claimed) -> Attempt:
        automation = claim.automation
        body = trigger_body(claim.trigger_id, automation, claim.event, claim.created_at)
        return Attempt(
            claim.trigger_id, automation.destination, body, self.app, self.http, self.allow_private
        )

    def _counted(self, statuses: Mapping[str, int]) -> None:
        """Count the trigger statuses a committed record or settlement left (on the
        database thread that committed it: one Redis round trip per transaction)."""
        if statuses and self.count_statuses is not None:
            self.count_statuses(statuses)

    async def _record_loop(self) -> None:
        """Record finished attempts as they come; once closing, until none is left."""
        failures = 0
        while True:
            await self._to_record.wait()
            self._to_record.clear()
            if not await self._record_finished():
                failures += 1
                await asyncio.sleep(database_retry_delay_s(failures))
                self._to_record.set()
                continue
            failures = 0
            if self._closing and not self._finished and not self._unstarted:
                return

    async def _record_finished(self) -> bool:
        """Record the attempts finished so far, and give back the triggers claimed and not
        attempted; False (they are kept) if that failed."""
        batch, self._finished = self._finished, []
        unstarted, self._unstarted = self._unstarted, []
        if not batch and not unstarted:
            return True
        try:
            await self._in_database(
                lambda: self._counted(self.triggers.record(batch, utc_now(), unstarted))
            )
        except Exception:
            log.exception("recording %d attempts failed; trying again", len(batch))
            self._finished = batch + self._finished
            self._unstarted = unstarted + self._unstarted
            return False
        return True
