"""The dev stack's settings file (``sluice.cli.devenv``): what ``sluice dev`` writes, commands
beside it read, and a variable that is set always wins."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sluice.cli import devenv
from sluice.cli.root import main

STACK = {
    "SLUICE_DATABASE_URL": "sqlite:////home/a user/it's here/.sluice/sluice.db",
    "SLUICE_REDIS_URL": "redis://127.0.0.1:41977/0",
    "SLUICE_BROKER_URL": "redis://127.0.0.1:41977/0",
    "SLUICE_ALLOW_PRIVATE_WEBHOOKS": "true",
}


def test_the_file_reads_back_as_written_and_a_shell_reads_it_alike(tmp_path: Path) -> None:
    path = devenv.write(tmp_path, STACK)
    assert path == tmp_path / devenv.FILE_NAME
    assert devenv.read(path) == STACK
    assert path.stat().st_mode & 0o077 == 0
    assert [p.name for p in tmp_path.iterdir()] == [devenv.FILE_NAME]  # no partial file left
    shell = subprocess.run(
        ["sh", "-c", f'set -a; . {shlex.quote(str(path))}; echo "$SLUICE_DATABASE_URL"'],
        capture_output=True,
        text=True,
        check=True,
        env={},
    )
    assert shell.stdout.strip() == STACK["SLUICE_DATABASE_URL"]


def test_apply_fills_what_is_unset_and_only_when_no_url_is_set(tmp_path: Path) -> None:
    devenv.write(tmp_path, STACK)
    environ = {"SLUICE_ALLOW_PRIVATE_WEBHOOKS": "false", "HOME": "/root"}
    assert devenv.apply(environ, tmp_path) == tmp_path / devenv.FILE_NAME
    assert environ == {**STACK, "SLUICE_ALLOW_PRIVATE_WEBHOOKS": "false", "HOME": "/root"}

    for name in devenv.URL_VARIABLES:
        explicit = {name: "postgresql+psycopg://db/prod"}
        assert devenv.apply(explicit, tmp_path) is None
        assert explicit == {name: "postgresql+psycopg://db/prod"}

    nothing: dict[str, str] = {}
    assert devenv.apply(nothing, tmp_path / "elsewhere") is None
    assert nothing == {}


def test_sluice_dev_writes_where_the_other_commands_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `--dev-dir`/SLUICE_DEV_DIR name the directory commands read dev.env from: `sluice dev`
    # must run its stack there too, or the commands beside it read another one's file.
    started: list[Path] = []
    monkeypatch.setattr(
        "sluice.cli.dev.run_dev", lambda host, port, data_dir: started.append(data_dir)
    )
    runner = CliRunner()
    by_env = runner.invoke(main, ["dev"], env={devenv.DIR_VARIABLE: str(tmp_path / "env")})
    by_option = runner.invoke(main, ["--dev-dir", str(tmp_path / "option"), "dev"])
    explicit = runner.invoke(main, ["--dev-dir", "x", "dev", "--data-dir", str(tmp_path / "own")])
    default = runner.invoke(main, ["dev"], env={devenv.DIR_VARIABLE: None})
    for result in (by_env, by_option, explicit, default):
        assert result.exit_code == 0, (result.output, repr(result.exception))
    assert started == [tmp_path / "env", tmp_path / "option", tmp_path / "own", devenv.DEFAULT_DIR]


def test_the_banner_cannot_be_taken_for_the_workers_ready_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A log watcher waits for ``celery@<node> ready.``: the banner, printed earlier, must not
    match it."""
    from sluice.cli.dev import _banner
    from sluice.settings import Settings

    settings = Settings(
        database_url=STACK["SLUICE_DATABASE_URL"], redis_url=STACK["SLUICE_REDIS_URL"]
    )
    demo = {"workspace_id": "ws-demo", "write_key": "wk-demo"}
    _banner("127.0.0.1", 8000, tmp_path, tmp_path / "env", settings, demo)

    banner = capsys.readouterr().out
    assert "Events stay `queued` until the worker" in banner
    assert re.search(r"celery@\S*\s*ready", banner) is None
    assert "celery@" not in banner
