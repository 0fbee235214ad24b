"""docker-compose.yml: valid against the Compose Specification schema, and its services run
the commands the end-to-end tests start as processes. (No Docker engine runs here.)"""

from __future__ import annotations

import copy
import json
from importlib.resources import files
from pathlib import Path
from typing import Any

import click
import jsonschema
import pytest
import yaml

from tests.processes import (
    DELIVERY_WORKER_COMMAND,
    GATEWAY_COMMAND,
    MIGRATE_COMMAND,
    WORKER_COMMAND,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def spec_errors(document: dict[str, Any]) -> list[str]:
    """Problems against the Compose Specification schema vendored by check-jsonschema."""
    schema_file = files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema = json.loads(schema_file.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)  # draft 2020-12
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


def test_valid_against_the_compose_specification(compose: dict[str, Any]) -> None:
    assert spec_errors(compose) == []


def test_the_schema_check_catches_a_misspelt_key(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["worker"]["comand"] = broken["services"]["worker"].pop("command")
    assert any("comand" in error for error in spec_errors(broken))


def test_services_run_the_documented_commands(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == MIGRATE_COMMAND
    assert services["gateway"]["command"] == GATEWAY_COMMAND
    assert services["worker"]["command"] == WORKER_COMMAND
    assert services["deliverer"]["command"] == DELIVERY_WORKER_COMMAND
    assert services["flower"]["command"] == [
        "sluice",
        "flower",
        "--address=0.0.0.0",
        "--port=5555",
    ]


def test_redis_keeps_the_queue(compose: dict[str, Any]) -> None:
    command = " ".join(compose["services"]["redis"]["command"])
    for setting in (
        "--appendonly yes",
        "--appendfsync everysec",
        "--maxmemory 2gb",
        "--maxmemory-policy noeviction",
    ):
        assert setting in command


def test_workers_scale_and_start_after_migration(compose: dict[str, Any]) -> None:
    for scaled in ("worker", "deliverer"):
        worker = compose["services"][scaled]
        assert "container_name" not in worker and "ports" not in worker  # --scale worker=N
    for name in ("worker", "deliverer", "gateway"):
        depends = compose["services"][name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
    environment = compose["x-sluice-env"]
    assert environment["SLUICE_DATABASE_URL"].startswith("postgresql")
    assert environment["SLUICE_BROKER_URL"] == environment["SLUICE_REDIS_URL"]


def test_flower_needs_a_password_and_stays_on_loopback(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["ports"] == ["127.0.0.1:5555:5555"]


def test_the_image_copies_what_exists_and_installs_the_command() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text().splitlines()
    copied = [line.split()[1:-1] for line in dockerfile if line.startswith("COPY ")]
    sources = [source for sources in copied for source in sources]
    expected = {"pyproject.toml", "README.md", "LICENSE", "sluice", "producer", "rules", "worker"}
    assert expected | {"gateway"} <= set(sources)
    assert all((ROOT / source).exists() for source in sources)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert not set(sources) & set(ignored)
    assert any(line.startswith("RUN pip install '.[server]'") for line in dockerfile)


def _resolves(argv: list[str]) -> bool:
    """Whether ``sluice <argv>`` names a command of the CLI (options aside)."""
    from sluice.cli.root import main

    command: click.Command | None = main
    for word in argv:
        if word.startswith("-"):
            break
        if not isinstance(command, click.Group):
            return False
        command = command.get_command(click.Context(command), word)
    return command is not None


def test_sluice_processes_have_healthchecks_that_the_cli_runs(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, expected in (
        ("gateway", ["CMD", "sluice", "check", "gateway"]),
        ("worker", ["CMD", "sluice", "check", "worker"]),
        ("deliverer", ["CMD", "sluice", "check", "deliverer"]),
    ):
        healthcheck = services[name]["healthcheck"]
        assert healthcheck["test"] == expected
        assert _resolves(expected[2:])
        assert {"interval", "timeout", "retries", "start_period"} <= set(healthcheck)
    # The gateway's check asks the port the gateway listens on.
    assert services["gateway"]["command"][-1] == "8000"
    assert "5555/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])
    assert not _resolves(["check", "nothing"])


def test_every_service_restarts(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["restart"] == "on-failure"
    for name, service in services.items():
        if name != "migrate":
            assert service.get("restart") == "unless-stopped", name


def test_flower_reads_the_broker_from_the_shared_environment(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert _resolves(flower["command"][1:])
    shared = compose["x-sluice-env"]
    environment = flower["environment"]
    assert {key: environment[key] for key in shared} == shared
    assert "SLUICE_BROKER_URL" in environment
    assert not any("redis://" in part for part in flower["command"])
