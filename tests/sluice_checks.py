"""Running ``sluice check …`` as a container healthcheck does: a process of its own."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pytest

from tests.processes import sluice_executable


@dataclass(frozen=True)
class CheckResult:
    code: int
    output: str


def run_check(args: Sequence[str], env: Mapping[str, str]) -> CheckResult:
    done = subprocess.run(
        [sluice_executable(), "check", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return CheckResult(done.returncode, (done.stdout + done.stderr).strip())


def until_check(
    args: Sequence[str], env: Mapping[str, str], code: int, timeout_s: float = 30
) -> CheckResult:
    """Run the check until it exits ``code``; its last result."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = run_check(args, env)
        if result.code == code:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"`sluice check {' '.join(args)}` stayed {result.code}: {result.output}")
        time.sleep(0.2)
