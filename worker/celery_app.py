"""The Celery app, configured deliberately (docs/reliability.md, docs/conventions.md #10)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_process_init
from kombu.entity import Queue

from sluice.gc_tuning import tune_collector
from sluice.logs import use_log_format_in_celery
from sluice.producer.transport import broker_transport_options, publish_retry_policy
from sluice.producer.wire import INGEST_QUEUE, INGEST_TASK, SERIALIZER, register_serializer
from sluice.settings import Settings
from sluice.worker.bootsteps import journal_sweep_step, known_workspaces_step, retention_step
from sluice.worker.runtime import Runtime
from sluice.worker.tasks import register_tasks


def celery_config(settings: Settings) -> dict[str, Any]:
    # The longest a batch may run (500 events take well under a second): the limits only
    # stop a stuck task, and stay far below the visibility timeout, so a slow batch is never
    # handed to a second worker while the first still runs (docs/reliability.md #4).
    hard_limit_s = settings.task_time_limit_s
    if settings.visibility_timeout_s <= hard_limit_s * 2:
        raise ValueError("SLUICE_VISIBILITY_TIMEOUT_S must be over twice SLUICE_TASK_TIME_LIMIT_S")
    return {
        "broker_url": settings.broker_url,
        # Sized for short batches: a killed worker's batch is back within minutes, and no
        # batch or retry countdown comes near it (docs/reliability.md #3, #4).
        "broker_transport_options": broker_transport_options(
            settings.publish_timeout_s, settings.visibility_timeout_s
        ),
        # Keep reconnecting to the broker forever rather than exiting the worker.
        "broker_connection_retry_on_startup": True,
        "broker_connection_max_retries": None,
        # Publishing (retries, producers on the worker) rides out a short broker blip
        # instead of Celery's ~0.4 s default (docs/reliability.md #9).
        "task_publish_retry_policy": publish_retry_policy(settings.publish_timeout_s),
        # Envelopes are orjson (the ingest task declares it). The app default stays JSON:
        # remote control replies use it, and Flower or `celery inspect` cannot read ours.
        # Nothing that can carry code (pickle) is accepted.
        "task_serializer": "json",
        "accept_content": [SERIALIZER, "json"],
        # Outcomes live in our database; Celery results would be a second, weaker record.
        "task_ignore_result": True,
        "result_backend": None,
        # Ack only after the batch is committed; a lost worker's batch comes back
        # (docs/reliability.md #2). Our delivery counter caps the loop this can cause.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A batch killed at the hard time limit is requeued (and counted), not acked away.
        "task_acks_on_timeout": False,
        # Batches carry the parallelism: a worker holds one message per process, so a
        # crash strands at most that many and other workers take the rest.
        "worker_prefetch_multiplier": 1,
        # A task cut off by a lost broker connection is redelivered, and its effects are
        # idempotent, so cancelling it is safe (and Celery 6's default).
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_soft_time_limit": max(1, int(hard_limit_s * 0.8)),
        "task_time_limit": hard_limit_s,
        # Named queues only: a typo in a route fails loudly instead of filling a new queue.
        # Triggers need no queue: the deliverers take them from the database. Task
        # actions go to the queue their automation names (a ``Queue`` object, declared).
        "task_queues": (Queue(INGEST_QUEUE),),
        "task_default_queue": INGEST_QUEUE,
        "task_create_missing_queues": False,
        "task_routes": {INGEST_TASK: {"queue": INGEST_QUEUE}},
        # Flower: task events from workers, and "sent" events from producers.
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        # Recycle children now and then to bound the memory of a long-lived process.
        "worker_max_tasks_per_child": 10_000,
        "enable_utc": True,
        "timezone": "UTC",
    }


def create_app(
    settings: Settings, *, steps: Sequence[type[bootsteps.StartStopStep]] = ()
) -> Celery:
    """The app; its workers also run ``steps`` (the command adds a deliverer's:
    ``sluice.cli.worker_app``)."""
    register_serializer()
    app = Celery("sluice", set_as_current=True)
    app.conf.update(celery_config(settings))
    runtime = Runtime(settings)
    register_tasks(app, runtime)
    app.steps["worker"].add(journal_sweep_step(runtime))
    app.steps["worker"].add(retention_step(runtime))
    app.steps["worker"].add(known_workspaces_step(runtime))
    for step in steps:
        app.steps["worker"].add(step)

    def _fresh_connections(**_: Any) -> None:
        runtime.reset()
        tune_collector()

    worker_process_init.connect(_fresh_connections, weak=False)
    use_log_format_in_celery(settings.log_format)  # Celery sets up a worker's logging itself
    return app
