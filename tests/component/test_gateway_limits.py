"""The gateway's limits against one tenant hogging it, in process over a real Redis
database that no worker reads: keys longer than any key, batches counted before they are
validated, and ``Prefer: wait`` holders bounded per workspace."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from sluice.gateway import create_app
from sluice.settings import Settings
from sluice.store.definitions import add_definition
from sluice.store.workspaces import MAX_WRITE_KEY_CHARS, KeyGrant, create_workspace
from tests.routes import routes


@pytest.fixture
def client(isolated_redis_url: str, database_url: str) -> Iterator[TestClient]:
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("length", [MAX_WRITE_KEY_CHARS + 1, 8 * 1024])
def test_a_key_longer_than_any_key_gets_each_routes_unknown_key_answer_without_a_lookup(
    client: TestClient, engine: Engine, monkeypatch: pytest.MonkeyPatch, length: int
) -> None:
    workspace = create_workspace(engine, "long-keys")
    ws = workspace.workspace_id
    bunce = add_definition(engine, ws, "bunce", "Purchase", params={"plan": "string"})
    add_definition(engine, ws, "clevertap", "Program Released", required=["program_id"])
    every = routes(ws, bunce.definition_id, "some-message")
    unknown = f"sk_live_{uuid.uuid4().hex}"
    expected = {name: route(client, unknown) for name, route in every.items()}
    keys = client.app.state.gateway.keys  # type: ignore[attr-defined]
    lookup = keys._lookup
    looked_up: list[int] = []

    def spy(write_key: str) -> KeyGrant | None:
        looked_up.append(len(write_key))
        return lookup(write_key)  # type: ignore[no-any-return]

    monkeypatch.setattr(keys, "_lookup", spy)
    too_long = "sk_live_" + "x" * (length - len("sk_live_"))
    for name, route in every.items():
        answer = route(client, too_long)
        assert answer.status_code == 401, (name, answer.text)
        assert (answer.json(), answer.headers.get("www-authenticate")) == (
            expected[name].json(),
            expected[name].headers.get("www-authenticate"),
        ), name
    assert looked_up == []
    assert every["native track"](client, workspace.write_key).status_code == 200
