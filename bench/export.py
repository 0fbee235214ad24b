"""Export in constant memory: seed a workspace with N events and their outcomes, run the real
``sluice events export`` command over it, and print lines/s and the command's peak memory.

    python bench/export.py \\
        --database-url postgresql+psycopg://postgres@127.0.0.1:5432/bench_export

The PostgreSQL database named is created for the run and dropped afterwards (``--keep`` keeps
it). The same workspace is measured at each size of ``--sizes`` (seeded up to it), so the
sizes compare in one run; then SQLite at ``--sqlite-sizes`` (0 to skip) in a scratch file.

Rows are made by the worker's row builders (``sluice.worker.ingest.records``) from a few
validated events, varied in message id and event time, and inserted as the worker inserts
them (``insert_ignoring_conflicts``, many rows a statement). A share of the events
(``--not-stored``) are discarded or rejected: an outcome with its raw copy and no event row.

The export's peak memory is its ``VmHWM`` (``PeakMemory``); the line count
read from its stdout must equal the events seeded. ``--limit 1`` gives the command's memory
before it exports anything. Results: a table on stderr, JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from sluice.ops.export import (
    ExportSelection,
    outcome_only_query,
    stored_events_query,
)
from sluice.producer.events import Event
from sluice.rules import Reason, Verdict
from sluice.rules.decisions import Decision
from sluice.store.engine import insert_ignoring_conflicts, make_engine, normalise_url, writing
from sluice.store.migrate import upgrade
from sluice.store.schema import events, outcomes
from sluice.store.workspaces import create_workspace
from sluice.worker.ingest.records import event_row, outcome_row

INSERT_ROWS = 10_000  # rows a statement
EVENT_TIMES_S = 30 * 86_400  # events spread over 30 days, inserted out of time order
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def sluice_executable() -> str:
    beside = Path(sys.executable).with_name("sluice")
    return str(beside) if beside.exists() else "sluice"


def _templates(workspace_id: str) -> list[Event]:
    def made(**fields: Any) -> Event:
        return Event.model_validate(
            {"workspace_id": workspace_id, "received_at": NOW, "timestamp": NOW, **fields}
        )

    return [
        made(
            kind="custom",
            name="Page Viewed",
            user_id="u-1",
            properties={"path": "/pricing", "referrer": "https://example.com/", "n": 1},
            context={"user_agent": "Mozilla/5.0 (X11; Linux x86_64)", "ip": "203.0.113.9"},
        ),
        made(
            kind="login",
            user_id="u-2",
            email="someone@example.com",
            traits={"plan": "pro", "seats": 12, "name": "Someone Else"},
        ),
        made(kind="confirmation", user_id="u-3", properties={"orderId": "o-1", "total": 99.5}),
        made(kind="email_open", user_id="u-4", properties={"campaign": "november"}),
    ]


def _rows(
    workspace_id: str, start: int, stop: int, not_stored: float, seed: int
) -> Iterator[tuple[list[dict[str, Any]], list[dict[str, Any]]]]:
    """Event rows and outcome rows for events ``start``..``stop``, in chunks."""
    randoms = random.Random(seed)
    templates = _templates(workspace_id)
    accepted = [Decision(workspace_id, e.message_id, Verdict.accept(), e) for e in templates]
    dropped = [
        Decision(workspace_id, e.message_id, Verdict.discard(Reason.THROTTLED, "bench"), e)
        for e in templates
    ]
    for chunk_start in range(start, stop, INSERT_ROWS):
        event_rows, outcome_rows = [], []
        for index in range(chunk_start, min(stop, chunk_start + INSERT_ROWS)):
            message_id = f"m-{index:09d}"
            template = index % len(templates)
            stored = randoms.random() >= not_stored
            decision = (accepted if stored else dropped)[template]
            decided_at = NOW + timedelta(milliseconds=index)
            outcome = outcome_row(decision, f"b-{index // 500}", decided_at)
            outcome["message_id"] = message_id
            outcome_rows.append(outcome)
            if stored:
                row = event_row(decision, outcome["batch_id"], decided_at)
                row["message_id"] = message_id
                row["timestamp"] = NOW - timedelta(seconds=randoms.uniform(0, EVENT_TIMES_S))
                event_rows.append(row)
        yield event_rows, outcome_rows


def seed(engine: Engine, workspace_id: str, start: int, stop: int, not_stored: float) -> float:
    """Insert events ``start``..``stop``; the seconds it took."""
    started = time.perf_counter()
    for event_rows, outcome_rows in _rows(workspace_id, start, stop, not_stored, seed=start):
        with writing(engine) as conn:
            insert_ignoring_conflicts(conn, events, event_rows)
            insert_ignoring_conflicts(conn, outcomes, outcome_rows)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE events"))
            conn.execute(text("VACUUM ANALYZE outcomes"))
    return time.perf_counter() - started


def explain(engine: Engine, workspace_id: str) -> list[str]:
    """PostgreSQL's plans of the export's two queries, as cursors (not run)."""
    selection = ExportSelection(workspace_id)
    plans = []
    with engine.connect() as conn:
        for query in (stored_events_query(selection, None), outcome_only_query(selection, None)):
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            # As the export runs it: through a cursor (planned for its first rows, no workers).
            statement = f"EXPLAIN DECLARE export_plan CURSOR FOR {compiled}"
            plans += [row[0] for row in conn.execute(text(statement))]
            plans.append("")
    return plans


class PeakMemory:
    """The high-water mark of a process's resident memory (``VmHWM``), read every 10 ms
    until it exits. Not ``ru_maxrss``: Linux keeps, across ``exec``, the peak of the memory
    the child was forked with, and that is this script's, which grows as it seeds."""

    def __init__(self, pid: int) -> None:
        self._path = Path(f"/proc/{pid}/status")
        self._peak_kb = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._path.read_text().splitlines():
                if line.startswith("VmHWM:"):
                    self._peak_kb = max(self._peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass  # gone, or a zombie without memory

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self._read()

    def stop(self) -> int:
        self._read()
        self._done.set()
        self._thread.join()
        return self._peak_kb


def export(database_url: str, workspace_id: str, *extra: str) -> dict[str, float]:
    """Run the command, count its lines; lines/s, peak memory, elapsed seconds."""
    env = {**os.environ, "SLUICE_DATABASE_URL": database_url}
    started = time.perf_counter()
    process = subprocess.Popen(
        [sluice_executable(), "events", "export", workspace_id, *extra],
        stdout=subprocess.PIPE,
        env=env,
    )
    assert process.stdout is not None
    peak = PeakMemory(process.pid)
    lines = 0
    while block := process.stdout.read(1 << 20):
        lines += block.count(b"\n")
    peak_kb = peak.stop()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    elapsed_s = time.perf_counter() - started
    cpu_s = usage.ru_utime + usage.ru_stime
    if process.returncode != 0:
        raise SystemExit(f"export exited with {process.returncode}")
    return {
        "lines": lines,
        "seconds": round(elapsed_s, 2),
        "lines_per_s": round(lines / elapsed_s),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "cpu_s": round(cpu_s, 2),
        "lines_per_cpu_s": round(lines / cpu_s),  # steadier than lines/s on a busy machine
        "load_1m": os.getloadavg()[0],
    }


def measure(
    database_url: str, sizes: list[int], not_stored: float, label: str
) -> list[dict[str, Any]]:
    engine = make_engine(database_url)
    upgrade(engine)
    workspace_id = create_workspace(engine, f"export-{label}").workspace_id
    results: list[dict[str, Any]] = []
    startup = export(database_url, workspace_id, "--limit", "1")
    print(f"{label}: the command alone (--limit 1): {startup['peak_rss_mb']} MB", file=sys.stderr)
    results.append({"backend": label, "events": 0, "startup": True, **startup})
    seeded = 0
    for size in sizes:
        seed_s = seed(engine, workspace_id, seeded, size, not_stored)
        print(f"{label}: seeded {size - seeded:,} events in {seed_s:.0f} s", file=sys.stderr)
        seeded = size
        measured = export(database_url, workspace_id)
        if measured["lines"] != size:
            raise SystemExit(f"{label}: exported {measured['lines']} lines of {size}")
        results.append({"backend": label, "events": size, **measured})
        print(
            f"{label}: {size:>9,} events  {measured['lines_per_s']:>8,} lines/s  "
            f"{measured['seconds']:>7} s  peak {measured['peak_rss_mb']} MB  "
            f"cpu {measured['cpu_s']} s ({measured['lines_per_cpu_s']:,} lines/cpu-s)  "
            f"load {measured['load_1m']:.1f}",
            file=sys.stderr,
        )
    if engine.dialect.name == "postgresql":
        print("\n".join(explain(engine, workspace_id)), file=sys.stderr)
    engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--database-url",
        required=True,
        help="PostgreSQL: the database to create (it must not exist), used and dropped",
    )
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--sqlite-sizes", default="20000,200000")
    parser.add_argument("--not-stored", type=float, default=0.1, help="share discarded")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if int(size)]
    sqlite_sizes = [int(size) for size in args.sqlite_sizes.split(",") if int(size)]

    url = make_url(normalise_url(args.database_url))
    name = url.database
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    results = []
    try:
        database_url = url.render_as_string(hide_password=False)
        results += measure(database_url, sizes, args.not_stored, "postgresql")
    finally:
        if not args.keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
    if sqlite_sizes:
        with tempfile.TemporaryDirectory(prefix="sluice-export-") as scratch:
            sqlite_url = f"sqlite:///{Path(scratch) / 'export.db'}"
            results += measure(sqlite_url, sqlite_sizes, args.not_stored, "sqlite")
    print(json.dumps({"not_stored": args.not_stored, "results": results}))


if __name__ == "__main__":
    main()
