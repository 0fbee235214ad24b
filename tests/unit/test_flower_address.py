"""``sluice flower`` binds loopback unless told, and refuses an address other hosts reach
without a password (sluice.cli.flower.flower_argv), as a command and as a function."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from sluice.cli.flower import FlowerAddressError, flower_argv
from sluice.cli.root import main


def test_flower_listens_on_loopback_unless_told() -> None:
    assert flower_argv(["--port=5555"], {}) == ["--port=5555", "--address=127.0.0.1"]


@pytest.mark.parametrize(
    ("args", "environ"),
    [
        (["--address=127.0.0.1"], {}),
        (["--address", "::1"], {}),
        (["--address=localhost"], {}),
        (["--address=0.0.0.0"], {"FLOWER_BASIC_AUTH": "ops:secret"}),
        (["--address=0.0.0.0", "--basic-auth=ops:secret"], {}),
        (["--address", "10.0.0.5", "--auth", ".*@example\\.com"], {}),
    ],
)
def test_an_address_is_kept_when_loopback_or_behind_a_password(
    args: list[str], environ: dict[str, str]
) -> None:
    assert flower_argv(args, environ) == args


@pytest.mark.parametrize(
    "args",
    [["--address=0.0.0.0"], ["--address", "10.0.0.5"], ["--address="], ["--address=flower.lan"]],
)
def test_an_address_other_hosts_reach_needs_a_password(args: list[str]) -> None:
    with pytest.raises(FlowerAddressError, match="FLOWER_BASIC_AUTH"):
        flower_argv(args, {"FLOWER_BASIC_AUTH": ""})


def test_the_command_refuses_it_in_one_line_before_flower_starts() -> None:
    result = CliRunner().invoke(
        main,
        ["flower", "--address=0.0.0.0", "--port=5555"],
        env={"FLOWER_BASIC_AUTH": "", "FLOWER_AUTH": "", "SLUICE_DEV_DIR": "/nonexistent"},
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "0.0.0.0" in lines[0] and "FLOWER_BASIC_AUTH" in lines[0], lines
