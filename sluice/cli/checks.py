"""``sluice check``: health checks for container healthchecks (docs/operations.md). Each
prints one line and exits 0 when healthy, 1 when not."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import NoReturn

import click

from sluice.producer.wire import INGEST_QUEUE
from sluice.settings import Settings

WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}
DEFAULT_MAX_AGE_S = 30.0


def _healthy(message: str) -> None:
    click.echo(message)


def _unhealthy(message: str) -> NoReturn:
    click.echo(message)
    raise click.exceptions.Exit(1)


@click.group()
def check() -> None:
    """Health checks for container healthchecks: exit 0 when healthy, 1 when not."""


@check.command("gateway")
@click.option(
    "--url",
    default=None,
    help="The /readyz URL [default: http://SLUICE_GATEWAY_HOST:SLUICE_GATEWAY_PORT/readyz].",
)
@click.option("--timeout-s", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
def check_gateway(url: str | None, timeout_s: float) -> None:
    """The gateway answers 200 on /readyz: Redis, the broker, the database and its schema."""
    url = url or readyz_url(Settings())
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body = response.read()
            status = response.status
    except urllib.error.HTTPError as exc:
        body, status = exc.read(), exc.code
    except (urllib.error.URLError, OSError) as exc:
        _unhealthy(f"gateway: no answer from {url}: {getattr(exc, 'reason', exc)}")
    checks = _checks_of(body)
    if status != 200:
        _unhealthy(f"gateway: {status} from {url}: {checks or body[:200].decode(errors='replace')}")
    _healthy(f"gateway: ready ({checks or 'no details'})")


def readyz_url(settings: Settings) -> str:
    """The /readyz of the gateway the settings describe; one bound to every address is
    asked on loopback."""
    host = WILDCARD_HOSTS.get(settings.gateway_host, settings.gateway_host)
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.gateway_port}/readyz"


def _checks_of(body: bytes) -> str:
    """``part: state`` pairs of a /readyz answer, the failing ones first."""
    try:
        checks = json.loads(body).get("checks") or {}
    except (ValueError, AttributeError):
        return ""
    ordered = sorted(checks.items(), key=lambda item: item[1] == "ok")
    return ", ".join(f"{name}: {state}" for name, state in ordered)


@check.command("worker")
@click.option(
    "--node",
    default=None,
    help="The worker's node name [default: celery@<this host>, as `sluice worker` names it].",
)
@click.option("--queue", default=INGEST_QUEUE, show_default=True, help="It must consume this.")
@click.option("--timeout-s", type=click.FloatRange(min=0.1), default=5.0, show_default=True)
def check_worker(node: str | None, queue: str, timeout_s: float) -> None:
    """The worker of this host answers through the broker and consumes sluice.ingest."""
    from celery.utils.nodenames import default_nodename

    from sluice.ops.health import control_app, worker_problem

    node = node or default_nodename(None)
    app = control_app(Settings(), timeout_s)
    try:
        problem = worker_problem(app, node, queue, timeout_s)
    finally:
        app.close()
    if problem is not None:
        _unhealthy(f"worker: {problem}")
    _healthy(f"worker: {node} consumes {queue}")


@check.command("deliverer")
@click.option(
    "--path",
    type=click.Path(path_type=Path),
    default=None,
    help="The heartbeat file [default: SLUICE_DELIVERER_HEARTBEAT_PATH].",
)
@click.option(
    "--max-age-s",
    type=click.FloatRange(min=1),
    default=DEFAULT_MAX_AGE_S,
    show_default=True,
    help="Unhealthy when the heartbeat is older.",
)
def check_deliverer(path: Path | None, max_age_s: float) -> None:
    """The deliverer of this host is turning its loop: its heartbeat file is recent."""
    from sluice.delivery.heartbeat import heartbeat_age_s

    path = path or Settings().deliverer_heartbeat_path
    age_s = heartbeat_age_s(path)
    if age_s is None:
        _unhealthy(f"deliverer: no heartbeat at {path} (not running, or stopped)")
    if age_s > max_age_s:
        _unhealthy(f"deliverer: heartbeat {age_s:.0f} s old (over {max_age_s:g} s) at {path}")
    _healthy(f"deliverer: heartbeat {age_s:.1f} s old")
