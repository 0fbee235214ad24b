"""CPU time spent over a timed window, read from ``/proc`` (Linux), for ``bench/throughput.py``.

Three parts:

- the worker processes: each root process and all its descendants. ``utime + stime`` of
  every live process, plus ``cutime + cstime`` (the time of its children that exited and
  were reaped), before and after the window;
- the PostgreSQL client backends of the benchmark's database. ``pg_stat_activity`` is
  sampled every ``interval_s`` during the window and ``/proc/<pid>/stat`` is read for each
  backend. The bench's own connections carry the application name ``BENCH_APPLICATION`` and
  are left out. A backend that exits mid-window loses at most its last ``interval_s`` of
  CPU: the workers' connections are pooled, so few do. This needs PostgreSQL on this machine
  and a readable ``/proc``; otherwise it is reported as ``None``;
- the benchmark process itself (publishing and polling), from ``time.process_time``.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from sqlalchemy import NullPool, create_engine, text
from sqlalchemy.engine import make_url

from sluice.store.engine import normalise_url

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
BENCH_APPLICATION = "sluice-bench"
BACKENDS = text(
    "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
    " AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
    " AND application_name IS DISTINCT FROM :bench"
)


@dataclass(frozen=True, slots=True)
class ProcStat:
    name: str
    ppid: int
    ticks: int  # utime + stime + cutime + cstime


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/<pid>/stat``, or None when the process is gone (or not visible)."""
    try:
        line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The name (field 2) is in parentheses and may hold spaces: split after the last one.
    name = line[line.index("(") + 1 : line.rindex(")")]
    rest = line[line.rindex(")") + 2 :].split()  # rest[0] is field 3 (state)
    utime, stime, cutime, cstime = (int(value) for value in rest[11:15])  # fields 14-17
    return ProcStat(name=name, ppid=int(rest[1]), ticks=utime + stime + cutime + cstime)


def children_of(parent: int) -> list[int]:
    """The live processes whose parent is ``parent``."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None and stat.ppid == parent:
                found.append(int(entry.name))
    return found


def tree_ticks(roots: Sequence[int]) -> int:
    """Clock ticks of the roots and all their live descendants."""
    stats = {
        int(entry.name): read_stat(int(entry.name))
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit()
    }
    children: dict[int, list[int]] = {}
    for pid, stat in stats.items():
        if stat is not None:
            children.setdefault(stat.ppid, []).append(pid)
    total, pending = 0, list(roots)
    while pending:
        pid = pending.pop()
        stat = stats.get(pid) or read_stat(pid)
        total += stat.ticks if stat is not None else 0
        pending.extend(children.get(pid, []))
    return total


def tagged_url(database_url: str) -> str:
    """The URL with ``application_name=BENCH_APPLICATION`` on PostgreSQL (so that the
    backend sampling leaves the bench's own connections out); SQLite URLs unchanged."""
    url = make_url(normalise_url(database_url))
    if url.get_backend_name() != "postgresql":
        return database_url
    tagged = url.update_query_dict({"application_name": BENCH_APPLICATION})
    return tagged.render_as_string(hide_password=False)


class BackendCpu:
    """Clock ticks of the PostgreSQL client backends of one database over a ``with`` block."""

    def __init__(self, database_url: str, interval_s: float = 0.1) -> None:
        self._engine = create_engine(
            tagged_url(database_url), isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)
        self._baseline: dict[int, int] = {}
        self._latest: dict[int, int] = {}
        self.seconds: float | None = None

    def __enter__(self) -> BackendCpu:
        self._conn = self._engine.connect()
        self._baseline = self._sample()
        self._latest = dict(self._baseline)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            self._record(self._sample())
        finally:
            self._conn.close()
            self._engine.dispose()
        if self._latest:  # some backend was readable in /proc
            ticks = sum(t - self._baseline.get(pid, 0) for pid, t in self._latest.items())
            self.seconds = ticks / CLOCK_TICKS

    def _sample(self) -> dict[int, int]:
        pids = self._conn.execute(BACKENDS, {"bench": BENCH_APPLICATION}).scalars().all()
        stats = {pid: read_stat(pid) for pid in pids}
        # A pid that is not a postgres process here means PostgreSQL runs elsewhere.
        return {pid: s.ticks for pid, s in stats.items() if s is not None and s.name == "postgres"}

    def _record(self, sample: dict[int, int]) -> None:
        for pid, ticks in sample.items():
            self._latest[pid] = max(ticks, self._latest.get(pid, 0))

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._record(self._sample())


@dataclass(slots=True)
class CpuWindow:
    """CPU seconds spent during one timed window."""

    workers_s: float = 0.0
    postgres_s: float | None = None
    bench_s: float = 0.0

    def per_event_us(self, events: int) -> dict[str, float | None]:
        def us(seconds: float | None) -> float | None:
            return None if seconds is None else round(seconds * 1e6 / events, 1)

        return {
            "workers": us(self.workers_s),
            "postgres": us(self.postgres_s),
            "bench": us(self.bench_s),
        }


def is_postgres(database_url: str) -> bool:
    return make_url(normalise_url(database_url)).get_backend_name() == "postgresql"


@contextmanager
def measure(worker_pids: Sequence[int], database_url: str) -> Iterator[CpuWindow]:
    """The CPU that the workers (with their children), the PostgreSQL backends of the
    database (when it is PostgreSQL) and this process spend inside the ``with`` block."""
    window = CpuWindow()
    backends = BackendCpu(database_url) if is_postgres(database_url) else None
    with backends or nullcontext():
        workers_before, bench_before = tree_ticks(worker_pids), time.process_time()
        try:
            yield window
        finally:
            window.workers_s = (tree_ticks(worker_pids) - workers_before) / CLOCK_TICKS
            window.bench_s = time.process_time() - bench_before
    if backends is not None:
        window.postgres_s = backends.seconds
