"""Worker bootsteps: periodic work that runs inside every ``sluice worker`` process."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from celery import Celery, bootsteps

from sluice.ops.known_workspaces import announce_all
from sluice.ops.retention_sweep import RetentionThread
from sluice.worker.ingest.resend import resend_lost_batches
from sluice.worker.runtime import Runtime

log = logging.getLogger(__name__)


def periodic_step(
    what: str, every_s: float, job: Callable[[Celery], object]
) -> type[bootsteps.StartStopStep]:
    """A worker bootstep running ``job(app)`` every ``every_s`` on the worker's timer; a
    failure is logged and the job runs again next time."""

    class Periodic(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.components:Timer",)
        name = f"sluice {what}"

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.entry: Any = None

        def start(self, worker: Any) -> None:
            self.entry = worker.timer.call_repeatedly(every_s, self.run, (worker.app,))

        def stop(self, worker: Any) -> None:
            if self.entry is not None:
                self.entry.cancel()

        def run(self, app: Celery) -> None:
            try:
                job(app)
            except Exception:
                log.exception("the %s failed; it runs again in %.0fs", what, every_s)

    return Periodic


def journal_sweep_step(runtime: Runtime) -> type[bootsteps.StartStopStep]:
    """The journal sweep for lost batches (docs/reliability.md #1)."""
    settings = runtime.settings
    return periodic_step(
        "journal sweep",
        settings.journal_sweep_s,
        lambda app: resend_lost_batches(
            runtime.publisher,
            runtime.broker_redis,
            grace_s=settings.lost_batch_after_s(),
            every_s=settings.journal_sweep_s,
        ),
    )


def retention_step(runtime: Runtime) -> type[bootsteps.StartStopStep]:
    """The retention (``SLUICE_RETENTION_DAYS``, a workspace's ``retention_days``): in a
    thread of the main process, not on the worker's timer, because a purge takes longer than
    a timer callback may; one worker of the cluster sweeps per interval
    (``sluice.ops.retention_sweep``)."""
    settings = runtime.settings

    class Retention(bootsteps.StartStopStep):  # type: ignore[misc]
        requires = ("celery.worker.components:Pool",)
        name = "sluice retention"

        def __init__(self, worker: Any, **kwargs: Any) -> None:
            super().__init__(worker, **kwargs)
            self.thread: RetentionThread | None = None

        def start(self, worker: Any) -> None:
            self.thread = RetentionThread(
                settings.database_url,
                settings.redis_url,
                default_days=settings.retention_days,
                every_s=settings.retention_sweep_s,
                batch_events=settings.retention_batch_events,
                pause_s=settings.retention_pause_ms / 1000,
            )
            self.thread.start()

        def stop(self, worker: Any) -> None:
            if self.thread is not None:
                self.thread.stop(timeout_s=30)  # it stops between two transactions

    return Retention


def known_workspaces_step(runtime: Runtime) -> type[bootsteps.StartStopStep]:
    """Every workspace id of the database written to Redis at start, for ``EventClient``'s
    check (``sluice.ops.known_workspaces``); a failure is logged, the worker runs on."""

    class KnownWorkspaces(bootsteps.StartStopStep):  # type: ignore[misc]
        name = "sluice known workspaces"

        def start(self, worker: Any) -> None:
            try:
                count = announce_all(runtime.store.engine, runtime.redis)
            except Exception as exc:
                log.warning("could not write the known workspace ids: %s", exc)
                return
            log.info("%d known workspace ids written to Redis", count)

    return KnownWorkspaces
