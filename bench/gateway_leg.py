"""A ``sluice gateway`` process of one version of the code, for the before/after benchmarks
of the gateway's limits (``bench/junk_keys.py``, ``bench/loop_stall.py``).

The current code is this file's checkout; the baseline a detached ``git worktree`` of
``--baseline-ref``, removed on the way out. Each runs as ``python -m sluice.cli gateway``
with ``PYTHONPATH`` on its checkout, over a fresh SQLite file (schema from the current
code's migrations) and the Redis database given, emptied first."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import redis

from sluice.cli.embedded_redis import free_port
from sluice.store.engine import make_engine
from sluice.store.migrate import upgrade
from sluice.store.workspaces import create_workspace

IMPORT_CHECK = "import os, sluice; print(os.path.realpath(sluice.__file__))"


def stop_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so that the gateways, the worktree and the scratch
    directory are cleaned up on the way out."""

    def unwind(_signum: int, _frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, unwind)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True, slots=True)
class Code:
    label: str  # "before" or "after"
    root: Path  # the checkout holding sluice/
    revision: str


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "--no-optional-locks", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def code_versions(
    baseline_ref: str | None, scratch: Path, cleanup: contextlib.ExitStack
) -> list[Code]:
    """The baseline (if asked), then the current code."""
    repo = Path(git(Path(__file__).resolve().parent, "rev-parse", "--show-toplevel"))
    changed = "+changes" if git(repo, "status", "--porcelain") else ""
    current = Code("after", repo, git(repo, "rev-parse", "--short", "HEAD") + changed)
    if baseline_ref is None:
        return [current]
    revision = git(repo, "rev-parse", "--short", f"{baseline_ref}^{{commit}}")
    worktree = scratch / "baseline"
    git(repo, "worktree", "add", "--detach", str(worktree), revision)
    cleanup.callback(remove_worktree, repo, worktree)
    return [Code("before", worktree, revision), current]


def remove_worktree(repo: Path, worktree: Path) -> None:
    removed = subprocess.run(
        ["git", "-C", str(repo), "worktree", "remove", "--force", str(worktree)],
        capture_output=True,
        check=False,
    )
    if removed.returncode != 0:
        shutil.rmtree(worktree, ignore_errors=True)
        git(repo, "worktree", "prune")


@dataclass(frozen=True, slots=True)
class Running:
    code: Code
    pid: int
    base_url: str
    workspace_id: str
    write_key: str


def rss_mb(pid: int) -> float:
    """The process's resident set size, in MB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


@contextlib.contextmanager
def gateway(code: Code, redis_url: str, scratch: Path, **settings: str) -> Iterator[Running]:
    """A gateway of ``code`` with its own database and a workspace, stopped at the end."""
    redis.Redis.from_url(redis_url).flushdb()
    database_url = f"sqlite:///{scratch / f'{code.label}.db'}"
    engine = make_engine(database_url)
    upgrade(engine)
    workspace = create_workspace(engine, f"bench-{code.label}")
    engine.dispose()
    env = {
        **os.environ,
        "PYTHONPATH": str(code.root),
        "SLUICE_REDIS_URL": redis_url,
        "SLUICE_BROKER_URL": redis_url,
        "SLUICE_DATABASE_URL": database_url,
        **settings,
    }
    found = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK],
        env=env,
        cwd=scratch,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not Path(found).is_relative_to(code.root.resolve()):
        raise SystemExit(f"{code.label}: sluice imports from {found}, not from {code.root}")
    port = free_port()
    log = scratch / f"gateway-{code.label}.log"
    command = [sys.executable, "-m", "sluice.cli", "gateway", "--host", "127.0.0.1"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env=env,
            cwd=scratch,  # not a checkout: ``-m`` puts the working directory first
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise SystemExit(f"{code.label}: the gateway exited:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{base_url}/livez", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{code.label}: no /livez within 60 s")
            time.sleep(0.1)
        yield Running(code, process.pid, base_url, workspace.workspace_id, workspace.write_key)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def run_legs(
    baseline_ref: str | None,
    redis_url: str,
    prefix: str,
    leg: Callable[[Running], dict[str, object]],
) -> list[dict[str, object]]:
    """``leg`` against a gateway of the baseline (if asked), then of the current code; what
    each returned. Stops cleanly on SIGTERM too (the worktree is removed)."""
    stop_on_sigterm()
    results = []
    with contextlib.ExitStack() as cleanup:
        scratch = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix=prefix)))
        for code in code_versions(baseline_ref, scratch, cleanup):
            with gateway(code, redis_url, scratch) as running:
                results.append(leg(running))
    return results
