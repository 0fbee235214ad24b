"""Write-key rotation and the workspace list on each database (``sluice.store.write_keys``),
through the functions and through ``sluice workspace list|rotate-key``; the rotation notice
on a real Redis reaches a listening gateway's cache (``sluice.gateway.key_notices``)."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import datetime, timedelta

import pytest
import redis
from click.testing import CliRunner
from sqlalchemy import Engine, func, select

from sluice.cli.root import main
from sluice.gateway.key_notices import listen_for_rotations
from sluice.producer import keys
from sluice.producer.events import as_utc, utc_now
from sluice.store.schema import api_keys
from sluice.store.workspaces import (
    configure_workspace,
    create_workspace,
    hash_key,
    key_grant,
    workspace_for_key,
)
from sluice.store.write_keys import announce_rotation, list_workspaces, rotate_key


def new_workspace(engine: Engine) -> tuple[str, str]:
    created = create_workspace(engine, f"keys-{uuid.uuid4().hex[:8]}")
    return created.workspace_id, created.write_key


def end_of(engine: Engine, write_key: str) -> datetime | None:
    query = select(api_keys.c.expires_at).where(api_keys.c.key_hash == hash_key(write_key))
    with engine.connect() as conn:
        found = conn.execute(query).scalar_one()
    return None if found is None else as_utc(found)


def test_the_old_key_works_through_its_grace_and_stops_at_its_end(engine: Engine) -> None:
    workspace_id, old = new_workspace(engine)
    now = utc_now()
    rotated = rotate_key(engine, workspace_id, 60, now=now)
    ends_at = now + timedelta(seconds=60)
    assert rotated.workspace_id == workspace_id
    assert rotated.write_key.startswith("sk_live_") and rotated.write_key != old
    assert rotated.old_key_expires_at == ends_at == end_of(engine, old)
    assert end_of(engine, rotated.write_key) is None
    # Both work now; at the end exactly the old one stops, the new one goes on.
    assert workspace_for_key(engine, old) == workspace_for_key(engine, rotated.write_key)
    grant = key_grant(engine, old, ends_at - timedelta(microseconds=1))
    assert grant is not None and grant.workspace_id == workspace_id
    assert grant.expires_at == ends_at
    assert key_grant(engine, old, ends_at) is None
    assert key_grant(engine, rotated.write_key, ends_at + timedelta(days=400)) is not None


def test_no_grace_revokes_the_old_key_at_once(engine: Engine) -> None:
    workspace_id, old = new_workspace(engine)
    rotated = rotate_key(engine, workspace_id, 0)
    assert workspace_for_key(engine, old) is None
    assert workspace_for_key(engine, rotated.write_key) == workspace_id
    assert rotated.old_key_expires_at is not None
    assert rotated.old_key_expires_at <= utc_now()


def test_a_second_rotation_keeps_the_end_already_set(engine: Engine) -> None:
    workspace_id, first = new_workspace(engine)
    now = utc_now()
    second = rotate_key(engine, workspace_id, 3600, now=now).write_key
    later = now + timedelta(seconds=10)
    again = rotate_key(engine, workspace_id, 86_400, now=later)
    assert end_of(engine, first) == now + timedelta(seconds=3600)  # not extended
    assert end_of(engine, second) == later + timedelta(seconds=86_400)
    assert again.old_key_expires_at == later + timedelta(seconds=86_400)  # the last to stop
    # A third rotation finds no key without an end: it changes none and reports the latest.
    third = rotate_key(engine, workspace_id, 5, now=later)
    assert end_of(engine, again.write_key) == later + timedelta(seconds=5)
    assert third.old_key_expires_at == later + timedelta(seconds=86_400)
    assert end_of(engine, first) == now + timedelta(seconds=3600)


def test_rotating_when_every_old_key_has_ended_reports_no_old_key(engine: Engine) -> None:
    workspace_id, _ = new_workspace(engine)
    now = utc_now()
    rotate_key(engine, workspace_id, 1, now=now - timedelta(hours=1))
    expired_everything = rotate_key(engine, workspace_id, 0, now=now - timedelta(minutes=30))
    rotated = rotate_key(engine, workspace_id, 60, now=now)
    assert expired_everything.old_key_expires_at is not None
    # The key made half an hour ago got now + 60 s; the two before it ended long ago.
    assert rotated.old_key_expires_at == now + timedelta(seconds=60)
    rotated_again = rotate_key(engine, workspace_id, 0, now=now + timedelta(seconds=61))
    assert rotated_again.old_key_expires_at == now + timedelta(seconds=61)


def test_rotation_refuses_an_unknown_workspace_and_a_negative_grace(engine: Engine) -> None:
    with engine.connect() as conn:
        before = conn.execute(select(func.count()).select_from(api_keys)).scalar_one()
    with pytest.raises(LookupError):
        rotate_key(engine, "no-such-workspace", 60)
    workspace_id, old = new_workspace(engine)
    with pytest.raises(ValueError):
        rotate_key(engine, workspace_id, -1)
    with engine.connect() as conn:
        after = conn.execute(select(func.count()).select_from(api_keys)).scalar_one()
    assert after == before + 1  # only the new workspace's own key
    assert end_of(engine, old) is None


def test_the_list_counts_working_keys_and_shows_settings(engine: Engine) -> None:
    plain, _ = new_workspace(engine)
    rotated, _ = new_workspace(engine)
    configure_workspace(engine, rotated, {"email_open_window_s": "600"})
    now = utc_now()
    rotate_key(engine, rotated, 120, now=now)
    listed = {row["workspace_id"]: row for row in list_workspaces(engine, now=now)}
    assert listed[plain]["active_keys"] == 1
    assert listed[plain]["next_key_expires_at"] is None
    assert listed[plain]["settings"] == {}
    assert listed[plain]["name"].startswith("keys-")
    assert datetime.fromisoformat(listed[plain]["created_at"]) <= now
    assert listed[rotated]["active_keys"] == 2
    assert listed[rotated]["next_key_expires_at"] == (now + timedelta(seconds=120)).isoformat()
    assert listed[rotated]["settings"] == {"email_open_window_s": 600}
    after = {row["workspace_id"]: row for row in list_workspaces(engine, now=now + timedelta(1))}
    assert after[rotated]["active_keys"] == 1
    assert after[rotated]["next_key_expires_at"] is None
    created = [row["created_at"] for row in list_workspaces(engine)]
    assert created == sorted(created)  # oldest first


def run_cli(database_url: str, redis_url: str, *args: str) -> tuple[int, str]:
    env = {"SLUICE_DATABASE_URL": database_url, "SLUICE_REDIS_URL": redis_url}
    result = CliRunner().invoke(main, ["workspace", *args], env=env)
    return result.exit_code, result.output


def test_the_commands_print_json_and_tell_the_gateways(
    engine: Engine, database_url: str, isolated_redis_url: str
) -> None:
    workspace_id, old = new_workspace(engine)
    listener = redis.Redis.from_url(isolated_redis_url).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(keys.key_rotations())
    try:
        code, output = run_cli(
            database_url, isolated_redis_url, "rotate-key", workspace_id, "--grace-s", "30"
        )
        assert code == 0, output
        assert "write_key:" in output and "old_key_expires_at:" in output
        code, output = run_cli(
            database_url, isolated_redis_url, "rotate-key", workspace_id, "--json"
        )
        assert code == 0, output
        answer = json.loads(output)
        assert set(answer) == {"workspace_id", "write_key", "old_key_expires_at"}
        assert answer["workspace_id"] == workspace_id
        assert workspace_for_key(engine, answer["write_key"]) == workspace_id
        # The second rotation kept the first one's 30 s on the original key.
        ends = end_of(engine, old)
        assert ends is not None and ends - utc_now() <= timedelta(seconds=30)
        told: list[dict[str, object]] = []
        deadline = time.monotonic() + 10
        while len(told) < 2 and time.monotonic() < deadline:
            message = listener.get_message(timeout=1)  # None: nothing, or the confirmation
            if message is not None and message["data"] == workspace_id.encode():
                told.append(message)
        assert len(told) == 2, "each rotation publishes one notice"
    finally:
        listener.close()

    code, output = run_cli(database_url, isolated_redis_url, "list", "--json")
    assert code == 0, output
    [mine] = [row for row in json.loads(output) if row["workspace_id"] == workspace_id]
    assert set(mine) == {
        "workspace_id",
        "name",
        "created_at",
        "active_keys",
        "next_key_expires_at",
        "settings",
    }
    assert mine["active_keys"] == 3
    code, output = run_cli(database_url, isolated_redis_url, "list")
    assert code == 0 and workspace_id in output and "keys: 3" in output

    code, output = run_cli(database_url, isolated_redis_url, "rotate-key", "nope")
    assert code == 1 and "no workspace 'nope'" in output


def test_a_listening_gateway_reloads_the_rotated_workspace(isolated_redis_url: str) -> None:
    workspace_id = str(uuid.uuid4())
    reloaded: list[str | None] = []

    async def scenario() -> None:
        def reload(workspace: str | None) -> int:
            reloaded.append(workspace)
            return 0

        listening = asyncio.create_task(listen_for_rotations(isolated_redis_url, reload))
        client = redis.Redis.from_url(isolated_redis_url)
        try:
            for _ in range(500):  # until it has subscribed (it then reloads everything once)
                if reloaded:
                    break
                await asyncio.sleep(0.01)
            assert reloaded == [None]
            assert announce_rotation(client, workspace_id)
            for _ in range(500):
                if workspace_id in reloaded:
                    break
                await asyncio.sleep(0.01)
            assert workspace_id in reloaded
        finally:
            listening.cancel()
            with pytest.raises(asyncio.CancelledError):
                await listening
            client.close()

    asyncio.run(scenario())


def test_a_notice_without_redis_is_reported_not_raised() -> None:
    client = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    assert announce_rotation(client, "ws") is False


def test_two_rotations_at_once_leave_only_the_last_key_without_an_end(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs one write transaction at a time")
    workspace_id, _ = new_workspace(engine)
    paused, resume = threading.Event(), threading.Event()

    def first_waits(write_key: str) -> str:  # inside the transaction, before the insert
        if not paused.is_set():
            paused.set()
            resume.wait(30)
        return hash_key(write_key)

    monkeypatch.setattr("sluice.store.write_keys.hash_key", first_waits)
    errors: list[BaseException] = []

    def rotate() -> None:
        try:
            rotate_key(engine, workspace_id, 60)
        except BaseException as exc:
            errors.append(exc)

    first, second = threading.Thread(target=rotate), threading.Thread(target=rotate)
    first.start()
    assert paused.wait(30)
    second.start()
    waiting = (
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    deadline = time.monotonic() + 30
    with engine.connect() as conn:
        while not conn.exec_driver_sql(waiting).scalar_one() and time.monotonic() < deadline:
            conn.rollback()
            time.sleep(0.02)
    resume.set()
    first.join(30)
    second.join(30)
    assert not errors and not first.is_alive() and not second.is_alive()
    query = select(func.count()).where(
        api_keys.c.workspace_id == workspace_id, api_keys.c.expires_at.is_(None)
    )
    with engine.connect() as conn:
        assert conn.execute(query).scalar_one() == 1
