"""Where the commands look for the gateway: `sluice check gateway` asks the configured
address, not a fixed 8000; `make run PORT=…` passes the port to `sluice dev`."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli.checks import readyz_url
from sluice.cli.embedded_redis import free_port
from sluice.cli.root import main
from sluice.settings import Settings

REPOSITORY = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("host", "url"),
    [
        ("127.0.0.1", "http://127.0.0.1:8123/readyz"),
        ("0.0.0.0", "http://127.0.0.1:8123/readyz"),  # bound everywhere: asked on loopback
        ("::", "http://[::1]:8123/readyz"),
        ("gateway.internal", "http://gateway.internal:8123/readyz"),
    ],
)
def test_the_readyz_url_follows_the_gateway_settings(host: str, url: str) -> None:
    assert readyz_url(Settings(gateway_host=host, gateway_port=8123)) == url


def test_check_gateway_asks_the_port_of_sluice_gateway_port() -> None:
    port = free_port()  # nobody listens: the line names the URL it asked
    result = CliRunner().invoke(
        main,
        ["check", "gateway", "--timeout-s", "1"],
        env={"SLUICE_GATEWAY_PORT": str(port), "SLUICE_DEV_DIR": "/nonexistent"},
    )
    assert result.exit_code == 1
    assert f"http://127.0.0.1:{port}/readyz" in result.output, result.output


@pytest.mark.skipif(shutil.which("make") is None, reason="no make")
@pytest.mark.parametrize(
    ("args", "command"), [([], "sluice dev\n"), (["PORT=8001"], "sluice dev --port 8001\n")]
)
def test_make_run_passes_port_to_sluice_dev(args: list[str], command: str) -> None:
    shown = subprocess.run(
        ["make", "-n", "-C", str(REPOSITORY), "run", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    lines = [line for line in shown.splitlines(keepends=True) if "sluice dev" in line]
    assert [line.rsplit("/", 1)[1].rstrip(" \n") + "\n" for line in lines] == [command], shown
