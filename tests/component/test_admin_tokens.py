"""Admin tokens (sluice.store.admin_tokens) and ``sluice token``: a token is shown once and
stored hashed; it is cluster-wide or scoped to workspaces that exist, read-only or not;
it stops working when it expires or is revoked."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import timedelta

import pytest
from sqlalchemy import Engine, select

from sluice.producer.events import utc_now
from sluice.store.admin_tokens import (
    MAX_TOKEN_CHARS,
    create_token,
    hash_token,
    list_tokens,
    revoke_token,
    token_grant,
)
from sluice.store.schema import admin_tokens
from sluice.store.workspaces import create_workspace
from tests.processes import sluice_executable


def test_a_token_is_stored_hashed_and_grants_what_it_was_given(engine: Engine) -> None:
    ws = create_workspace(engine, "scoped").workspace_id
    everywhere = create_token(engine, "ops")
    scoped = create_token(engine, "crm", workspace_ids=(ws, ws), read_only=True)
    with engine.connect() as conn:
        stored = {row.id: row for row in conn.execute(select(admin_tokens))}
    assert stored[everywhere.info.token_id].token_hash == hash_token(everywhere.token)
    assert everywhere.token not in str(dict(stored[everywhere.info.token_id]._mapping))
    grant = token_grant(engine, everywhere.token)
    assert grant is not None and grant.cluster_wide and not grant.read_only
    assert grant.reaches("any-workspace")
    grant = token_grant(engine, scoped.token)
    assert grant is not None and grant.workspaces == (ws,) and grant.read_only
    assert grant.reaches(ws) and not grant.reaches("ws_other") and not grant.cluster_wide
    assert scoped.fields()["workspaces"] == [ws] and everywhere.fields()["workspaces"] == "*"


def test_unknown_expired_and_revoked_tokens_grant_nothing(engine: Engine) -> None:
    expiring = create_token(engine, "short", expires_in_s=60)
    assert token_grant(engine, expiring.token) is not None
    later = utc_now() + timedelta(seconds=61)
    assert token_grant(engine, expiring.token, now=later) is None
    revoked = create_token(engine, "gone")
    assert revoke_token(engine, revoked.info.token_id)
    assert not revoke_token(engine, revoked.info.token_id)  # once
    assert token_grant(engine, revoked.token) is None
    for junk in ("", "sat_nope", "sat_\x00", "x" * (MAX_TOKEN_CHARS + 1)):
        assert token_grant(engine, junk) is None
    listed = {info.token_id: info for info in list_tokens(engine)}
    assert listed[revoked.info.token_id].revoked_at is not None


def test_a_token_cannot_be_scoped_to_a_workspace_that_does_not_exist(engine: Engine) -> None:
    with pytest.raises(LookupError, match="ws_missing"):
        create_token(engine, "typo", workspace_ids=("ws_missing",))
    with pytest.raises(ValueError):
        create_token(engine, "  ")
    with pytest.raises(ValueError):
        create_token(engine, "never", expires_in_s=0)


def test_sluice_token_create_list_and_revoke(database_url: str, engine: Engine) -> None:
    env = {**os.environ, "SLUICE_DATABASE_URL": database_url}
    ws = create_workspace(engine, "cli").workspace_id

    def sluice(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sluice_executable(), "token", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=check,
        )

    made = json.loads(
        sluice("create", "--name", "crm", "--workspace", ws, "--read-only", "--json").stdout
    )
    assert made["token"].startswith("sat_") and made["token_id"].startswith("tok_")
    assert made["workspaces"] == [ws] and made["read_only"] is True
    assert made["expires_at"] is None
    listed = json.loads(sluice("list", "--json").stdout)
    mine = next(item for item in listed if item["token_id"] == made["token_id"])
    assert "token" not in mine and mine["revoked_at"] is None
    assert sluice("revoke", made["token_id"]).stdout.strip() == f"revoked {made['token_id']}"
    again = sluice("revoke", made["token_id"], check=False)
    assert again.returncode == 1 and "no active token" in again.stderr
    missing = sluice("create", "--name", "x", "--workspace", "ws_missing", check=False)
    assert missing.returncode == 1 and "ws_missing" in missing.stderr
    assert token_grant(engine, made["token"]) is None
