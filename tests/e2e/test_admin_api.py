"""The control plane of a real gateway process (docs/admin-api.md): every admin route
against every kind of token, with the status §"Admin tokens" gives it; answers as
``application/problem+json``; every write in the audit log."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest

from sluice.actions import Action
from sluice.producer.events import utc_now
from sluice.store.admin_tokens import create_token, revoke_token
from sluice.store.automations import add_automation
from sluice.store.definitions import add_definition
from tests.conftest import Stack

Call = Callable[[httpx.Client, str], httpx.Response]


def routes(
    ws: str, definition: Callable[[], str], automation: Callable[[], str]
) -> dict[str, Call]:
    """One request per admin route, on the workspace ``ws`` (``definition()`` and
    ``automation()``: a new one's id, so that each delete has its own)."""
    kept, webhook = definition(), automation()
    definitions = f"/admin/v1/workspaces/{ws}/definitions"
    automations = f"/admin/v1/workspaces/{ws}/automations"
    return {
        "create workspace": lambda http, _: http.post("/admin/v1/workspaces", json={"name": "n"}),
        "list workspaces": lambda http, _: http.get("/admin/v1/workspaces"),
        "show workspace": lambda http, _: http.get(f"/admin/v1/workspaces/{ws}"),
        "configure workspace": lambda http, _: http.patch(
            f"/admin/v1/workspaces/{ws}", json={"settings": {"rate_limit_per_s": 500}}
        ),
        "rotate write key": lambda http, _: http.post(
            f"/admin/v1/workspaces/{ws}/write-key/rotate", json={"grace_s": 3600}
        ),
        "audit": lambda http, _: http.get("/admin/v1/audit"),
        "list dead letters": lambda http, _: http.get("/admin/v1/dead-letters"),
        "show dead letter": lambda http, _: http.get("/admin/v1/dead-letters/999999999"),
        "replay dead letter": lambda http, _: http.post("/admin/v1/dead-letters/999999999/replay"),
        "list definitions": lambda http, _: http.get(definitions),
        "add definition": lambda http, kind: http.post(
            definitions, json={"format": "clevertap", "name": f"Made by {kind}"}
        ),
        "show definition": lambda http, _: http.get(f"{definitions}/{kept}"),
        "delete definition": lambda http, _: http.delete(f"{definitions}/{definition()}"),
        "list automations": lambda http, _: http.get(automations),
        "add automation": lambda http, _: http.post(
            automations, json={"on": "Signed Up", "action": {"type": "bulletin"}}
        ),
        "show automation": lambda http, _: http.get(f"{automations}/{webhook}"),
        "disable automation": lambda http, _: http.patch(
            f"{automations}/{webhook}", json={"enabled": False}
        ),
        "delete automation": lambda http, _: http.delete(f"{automations}/{automation()}"),
        "rotate webhook secret": lambda http, _: http.post(
            f"{automations}/{webhook}/secret/rotate"
        ),
        "list events": lambda http, _: http.get(f"/admin/v1/workspaces/{ws}/events"),
        "show event": lambda http, _: http.get(f"/admin/v1/workspaces/{ws}/events/no-such"),
        "list deliveries": lambda http, _: http.get(f"{automations}/{webhook}/deliveries"),
        "retry trigger": lambda http, _: http.post(
            f"/admin/v1/workspaces/{ws}/triggers/trg_no_such/retry"
        ),
        "erase a contact": lambda http, _: http.post(
            f"/admin/v1/workspaces/{ws}/erasures", json={"email": "nobody@example.com"}
        ),
        "export": lambda http, _: http.get(f"/admin/v1/workspaces/{ws}/export"),
        "stats": lambda http, _: http.get(f"/admin/v1/workspaces/{ws}/stats"),
    }


KINDS = (
    "none",
    "garbage",
    "revoked",
    "expired",
    "read-only",
    "other workspace",
    "this workspace",
    "cluster-wide",
)
UNAUTHORIZED = dict.fromkeys(("none", "garbage", "revoked", "expired"), 401)
# A workspace's reads and writes, per token kind (besides the four 401s).
READ = {"read-only": 200, "other workspace": 404, "this workspace": 200, "cluster-wide": 200}
WRITE = {"read-only": 403, "other workspace": 404, "this workspace": 200, "cluster-wide": 200}
# route -> expected status per token kind (besides the four 401s)
EXPECTED: dict[str, dict[str, int]] = {
    "create workspace": {
        "read-only": 403,
        "other workspace": 403,
        "this workspace": 403,
        "cluster-wide": 201,
    },
    "list workspaces": dict.fromkeys(
        ("read-only", "other workspace", "this workspace", "cluster-wide"), 200
    ),
    "show workspace": {
        "read-only": 200,
        "other workspace": 404,
        "this workspace": 200,
        "cluster-wide": 200,
    },
    "configure workspace": {
        "read-only": 403,
        "other workspace": 404,
        "this workspace": 200,
        "cluster-wide": 200,
    },
    "rotate write key": {
        "read-only": 403,
        "other workspace": 404,
        "this workspace": 200,
        "cluster-wide": 200,
    },
    "audit": {
        "read-only": 200,
        "other workspace": 403,
        "this workspace": 403,
        "cluster-wide": 200,
    },
    "list dead letters": {
        "read-only": 200,
        "other workspace": 403,
        "this workspace": 403,
        "cluster-wide": 200,
    },
    "show dead letter": {
        "read-only": 404,
        "other workspace": 403,
        "this workspace": 403,
        "cluster-wide": 404,
    },
    "replay dead letter": {
        "read-only": 403,
        "other workspace": 403,
        "this workspace": 403,
        "cluster-wide": 404,
    },
    "list definitions": READ,
    "add definition": {**WRITE, "this workspace": 201, "cluster-wide": 201},
    "show definition": READ,
    "delete definition": {**WRITE, "this workspace": 204, "cluster-wide": 204},
    "list automations": READ,
    "add automation": {**WRITE, "this workspace": 201, "cluster-wide": 201},
    "show automation": READ,
    "disable automation": WRITE,
    "delete automation": {**WRITE, "this workspace": 204, "cluster-wide": 204},
    "rotate webhook secret": WRITE,
    "list events": READ,
    "show event": {**READ, "read-only": 404, "this workspace": 404, "cluster-wide": 404},
    "list deliveries": READ,
    "retry trigger": {**WRITE, "this workspace": 404, "cluster-wide": 404},
    "erase a contact": WRITE,
    "export": READ,
    "stats": READ,
}


def tokens(stack: Stack, ws: str, other: str) -> dict[str, str | None]:
    engine = stack.engine
    revoked = create_token(engine, "revoked")
    revoke_token(engine, revoked.info.token_id)
    expired = create_token(engine, "expired", expires_in_s=60, now=utc_now() - timedelta(hours=1))
    return {
        "none": None,
        "garbage": "sat_not-a-token",
        "revoked": revoked.token,
        "expired": expired.token,
        "read-only": create_token(engine, "ro", read_only=True).token,
        "other workspace": create_token(engine, "other", workspace_ids=(other,)).token,
        "this workspace": create_token(engine, "this", workspace_ids=(ws,)).token,
        "cluster-wide": create_token(engine, "root").token,
    }


def test_every_admin_route_against_every_kind_of_token(stack: Stack) -> None:
    ws, other = stack.new_workspace().workspace_id, stack.new_workspace().workspace_id
    by_kind = tokens(stack, ws, other)
    got: dict[tuple[str, str], int] = {}
    expected: dict[tuple[str, str], int] = {}
    counter = iter(range(1000))

    def definition() -> str:
        made = add_definition(stack.engine, ws, "clevertap", f"Defined {next(counter)}")
        return made.definition_id

    def automation() -> str:
        made = add_automation(
            stack.engine,
            ws,
            "Signed Up",
            Action.WEBHOOK,
            target="http://127.0.0.1:9/in",
            allow_private_webhooks=True,  # as the stack's gateway allows
        )
        return made.id

    for name, call in routes(ws, definition, automation).items():
        for kind in KINDS:
            token = by_kind[kind]
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            with httpx.Client(base_url=stack.gateway_url, headers=headers, timeout=10) as http:
                answer = call(http, kind)
            got[(name, kind)] = answer.status_code
            expected[(name, kind)] = {**UNAUTHORIZED, **EXPECTED[name]}[kind]
            if answer.status_code >= 400:
                assert answer.headers["content-type"] == "application/problem+json", name
                problem = answer.json()
                assert problem["status"] == answer.status_code and problem["detail"], problem
                assert problem["type"].startswith("urn:sluice:problem:"), problem
            if answer.status_code == 401:
                assert answer.headers["www-authenticate"] == "Bearer"
    assert got == expected
    assert len(got) == len(KINDS) * len(EXPECTED)


def test_a_scoped_token_lists_only_its_workspaces_and_cannot_tell_others_exist(
    stack: Stack,
) -> None:
    ws, other = stack.new_workspace().workspace_id, stack.new_workspace().workspace_id
    scoped = create_token(stack.engine, "scoped", workspace_ids=(ws,)).token
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {scoped}"}, timeout=10
    ) as http:
        listed = http.get("/admin/v1/workspaces").json()
        assert [w["workspace_id"] for w in listed["data"]] == [ws]
        assert listed["next_cursor"] is None
        hidden, missing = (
            http.get(f"/admin/v1/workspaces/{other}"),
            http.get("/admin/v1/workspaces/ws_never_was"),
        )
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()


def test_workspaces_over_http_page_validate_and_are_audited(stack: Stack) -> None:
    root = create_token(stack.engine, "root").token
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {root}"}, timeout=10
    ) as http:
        made = [http.post("/admin/v1/workspaces", json={"name": f"w{i}"}) for i in range(3)]
        assert all(answer.status_code == 201 for answer in made)
        created = made[-1].json()
        assert set(created) == {"workspace_id", "name", "write_key"}
        sent = httpx.post(
            f"{stack.gateway_url}/v1/track",
            auth=(created["write_key"], ""),
            json={"userId": "u1", "event": "Signed Up"},
        )
        assert sent.status_code == 200, sent.text  # the new key works at once
        first = http.get("/admin/v1/workspaces", params={"limit": 2}).json()
        second = http.get(
            "/admin/v1/workspaces", params={"limit": 2, "cursor": first["next_cursor"]}
        ).json()
        seen = [w["workspace_id"] for w in first["data"] + second["data"]]
        assert seen[:3] == [m.json()["workspace_id"] for m in reversed(made)]  # newest first
        assert len(seen) == len(set(seen))
        bad = http.patch(
            f"/admin/v1/workspaces/{created['workspace_id']}",
            json={"settings": {"rate_limit_per_s": "lots"}},
        )
        assert bad.status_code == 422, bad.text
        assert bad.json()["errors"][0]["field"] == "settings.rate_limit_per_s"
        unknown = http.patch(
            f"/admin/v1/workspaces/{created['workspace_id']}", json={"settings": {"nope": 1}}
        )
        assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "settings"
        no_name = http.post("/admin/v1/workspaces", json={})
        assert no_name.status_code == 422 and no_name.json()["errors"][0]["field"] == "name"
        junk = http.get("/admin/v1/workspaces", params={"cursor": "!!"})
        assert junk.status_code == 422
        changed = http.patch(
            f"/admin/v1/workspaces/{created['workspace_id']}",
            json={"settings": {"rate_limit_per_s": 50}},
        )
        assert changed.json()["settings"] == {"rate_limit_per_s": 50}
        audit = http.get("/admin/v1/audit", params={"limit": 10}).json()["data"]
    operations = [(entry["operation"], entry["outcome"]) for entry in audit]
    assert ("PATCH /admin/v1/workspaces/{workspace_id}", 200) in operations
    assert ("PATCH /admin/v1/workspaces/{workspace_id}", 422) in operations
    assert ("POST /admin/v1/workspaces", 201) in operations


@pytest.mark.parametrize("header", ["Basic abc", "Bearer", "Token sat_x"])
def test_a_malformed_authorization_is_a_401(stack: Stack, header: str) -> None:
    answer = httpx.get(
        f"{stack.gateway_url}/admin/v1/workspaces", headers={"Authorization": header}, timeout=10
    )
    assert answer.status_code == 401


def test_definitions_over_http_and_from_the_command_line_are_the_same(stack: Stack) -> None:
    import json
    import os
    import subprocess

    from tests.processes import sluice_executable

    ws = stack.new_workspace().workspace_id
    root = create_token(stack.engine, "root").token
    base = f"/admin/v1/workspaces/{ws}/definitions"
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {root}"}, timeout=10
    ) as http:
        made = http.post(
            base, json={"format": "bunce", "name": "Purchase", "params": {"plan": "string"}}
        )
        assert made.status_code == 201, made.text
        again = http.post(base, json={"format": "bunce", "name": "Purchase"})
        assert again.status_code == 409, again.text
        wrong = http.post(base, json={"format": "bunce", "name": "X", "params": {"a": "date"}})
        assert wrong.status_code == 422 and "unknown parameter type" in wrong.json()["detail"]
        for i in range(3):
            assert http.post(base, json={"format": "clevertap", "name": f"E{i}"}).status_code == 201
        first = http.get(base, params={"limit": 3}).json()
        rest = http.get(base, params={"limit": 3, "cursor": first["next_cursor"]}).json()
        names = [d["name"] for d in first["data"] + rest["data"]]
        assert names == ["E2", "E1", "E0", "Purchase"] and rest["next_cursor"] is None
        definition_id = made.json()["definition_id"]
        env = {**os.environ, "SLUICE_DATABASE_URL": stack.database_url}
        listed = subprocess.run(
            [sluice_executable(), "definition", "list", ws, "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert json.loads(listed.stdout) == first["data"] + rest["data"]
        subprocess.run(
            [sluice_executable(), "definition", "delete", ws, definition_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        assert http.get(f"{base}/{definition_id}").status_code == 404
        assert http.delete(f"{base}/{definition_id}").status_code == 404


def test_automations_over_http_and_from_the_command_line(stack: Stack) -> None:
    import json
    import os
    import subprocess

    from tests.processes import sluice_executable

    ws = stack.new_workspace().workspace_id
    root = create_token(stack.engine, "root").token
    base = f"/admin/v1/workspaces/{ws}/automations"
    env = {**os.environ, "SLUICE_DATABASE_URL": stack.database_url}

    def sluice(*args: str) -> str:
        done = subprocess.run(
            [sluice_executable(), "automation", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return done.stdout

    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {root}"}, timeout=10
    ) as http:
        made = http.post(
            base,
            json={
                "on": "Order Completed",
                "where": {"plan": "pro"},
                "action": {"type": "webhook", "url": "http://127.0.0.1:9/orders"},
            },
        )
        assert made.status_code == 201, made.text
        created = made.json()
        assert created["secret"].startswith("whsec_") and created["where"] == {"plan": "pro"}
        automation_id = created["automation_id"]
        shown = http.get(f"{base}/{automation_id}").json()
        assert "secret" not in shown and shown["status"] == "active"
        assert json.loads(sluice("show", automation_id)) == shown
        refused = http.post(
            base, json={"on": "X", "action": {"type": "webhook", "url": "ftp://127.0.0.1/"}}
        )
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "action"
        unknown_type = http.post(base, json={"on": "X", "action": {"type": "sms"}})
        assert unknown_type.status_code == 422
        off = http.patch(f"{base}/{automation_id}", json={"enabled": False}).json()
        assert off["status"] == "disabled" and off["disabled_reason"]
        sluice("enable", automation_id)
        assert http.get(f"{base}/{automation_id}").json()["status"] == "active"
        rotated = http.post(f"{base}/{automation_id}/secret/rotate").json()
        assert rotated["secret"].startswith("whsec_") and rotated["secret"] != created["secret"]
        bulletin = http.post(base, json={"on": "Y", "action": {"type": "bulletin"}}).json()
        not_webhook = http.post(f"{base}/{bulletin['automation_id']}/secret/rotate")
        assert not_webhook.status_code == 422
        assert [a["automation_id"] for a in http.get(base).json()["data"]] == [
            bulletin["automation_id"],
            automation_id,
        ]
        sluice("delete", automation_id)
        assert http.get(f"{base}/{automation_id}").status_code == 404
        assert http.delete(f"{base}/{automation_id}").status_code == 404
        assert http.delete(f"{base}/{bulletin['automation_id']}").status_code == 204


def test_a_services_whole_setup_over_http_only(stack: Stack) -> None:
    """Create a workspace and a webhook automation, send an event with the new key, see the
    delivery, retry it, disable the automation, rotate the key, erase the contact, read
    the stats and the export: nothing but HTTP (the token aside, from the CLI)."""
    import json

    from tests.receiver import Reply, running_receiver

    root = create_token(stack.engine, "crm").token
    with (
        running_receiver() as receiver,
        httpx.Client(
            base_url=stack.gateway_url, headers={"Authorization": f"Bearer {root}"}, timeout=10
        ) as admin,
    ):
        made = admin.post("/admin/v1/workspaces", json={"name": "Acme"}).json()
        ws, key = made["workspace_id"], made["write_key"]
        base = f"/admin/v1/workspaces/{ws}"
        hook = receiver.script("/signed-up", [Reply(200)])
        automation = admin.post(
            f"{base}/automations",
            json={"on": "Signed Up", "action": {"type": "webhook", "url": hook}},
        ).json()
        sent = httpx.post(
            f"{stack.gateway_url}/v1/track",
            auth=(key, ""),
            json={"userId": "u-42", "event": "Signed Up", "properties": {"plan": "pro"}},
        )
        assert sent.status_code == 200, sent.text
        message_id = sent.json()["message_id"]
        (delivered,) = receiver.wait_for("/signed-up", 1)
        deliveries_url = f"{base}/automations/{automation['automation_id']}/deliveries"
        deadline = time.monotonic() + 30

        def delivered_triggers() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = admin.get(deliveries_url).json()["data"]
            return found if found and found[0]["status"] == "delivered" else []

        while not (found := delivered_triggers()):
            assert time.monotonic() < deadline, admin.get(deliveries_url).text
            time.sleep(0.2)
        (trigger,) = found
        assert trigger["attempt_log"][0]["result"] == "delivered"
        assert delivered.headers["webhook-id"] == trigger["trigger_id"]
        event = admin.get(f"{base}/events/{message_id}").json()
        assert event["outcome"]["status"] == "accepted"
        assert event["event"]["user_id"] == "u-42" and event["event"]["properties"] == {
            "plan": "pro"
        }
        assert [t["trigger_id"] for t in event["triggers"]] == [trigger["trigger_id"]]
        listed = admin.get(f"{base}/events", params={"status": "accepted", "user_id": "u-42"})
        assert [e["message_id"] for e in listed.json()["data"]] == [message_id]

        retried = admin.post(f"{base}/triggers/{trigger['trigger_id']}/retry")
        assert retried.status_code == 200, retried.text
        again = receiver.wait_for("/signed-up", 2)
        assert again[1].headers["webhook-id"] == trigger["trigger_id"]  # the same id

        off = admin.patch(
            f"{base}/automations/{automation['automation_id']}", json={"enabled": False}
        )
        assert off.json()["status"] == "disabled"
        refused = admin.post(f"{base}/triggers/{trigger['trigger_id']}/retry")
        assert refused.status_code == 409

        rotated = admin.post(f"{base}/write-key/rotate", json={"grace_s": 0}).json()
        deadline = time.monotonic() + 10
        while (
            httpx.post(
                f"{stack.gateway_url}/v1/track", auth=(key, ""), json={"userId": "u", "event": "E"}
            ).status_code
            != 401
        ):
            assert time.monotonic() < deadline, "the old key still works"
            time.sleep(0.2)
        assert (
            httpx.post(
                f"{stack.gateway_url}/v1/track",
                auth=(rotated["write_key"], ""),
                json={"userId": "u", "event": "E"},
            ).status_code
            == 200
        )
        stats = admin.get(f"{base}/stats").json()
        assert stats["accepted"] >= 1
        export = admin.get(f"{base}/export")
        assert export.headers["content-type"].startswith("application/x-ndjson")
        lines = [json.loads(line) for line in export.text.splitlines()]
        assert message_id in {line["message_id"] for line in lines}

        erased = admin.post(f"{base}/erasures", json={"user_id": "u-42"})
        assert erased.status_code == 200, erased.text
        assert erased.json()["removed"]["events"] >= 1
        assert admin.get(f"{base}/events/{message_id}").status_code == 404
        both = admin.post(f"{base}/erasures", json={"user_id": "u", "email": "a@x.io"})
        assert both.status_code == 422


def test_sluice_audit_lists_the_writes_of_the_control_plane(stack: Stack) -> None:
    import json
    import os
    import subprocess

    from tests.processes import sluice_executable

    made = create_token(stack.engine, "auditor")
    answer = httpx.post(
        f"{stack.gateway_url}/admin/v1/workspaces",
        json={"name": "audited"},
        headers={"Authorization": f"Bearer {made.token}"},
        timeout=10,
    )
    assert answer.status_code == 201
    env = {**os.environ, "SLUICE_DATABASE_URL": stack.database_url}
    listed = subprocess.run(
        [sluice_executable(), "audit", "--limit", "5", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    mine = [e for e in json.loads(listed.stdout) if e["token_id"] == made.info.token_id]
    assert [(e["operation"], e["target"], e["outcome"]) for e in mine] == [
        ("POST /admin/v1/workspaces", "/admin/v1/workspaces", 201)
    ]


def test_what_a_client_puts_in_a_path_query_or_cursor_is_never_a_500(stack: Stack) -> None:
    import base64

    def cursor(position: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(position).encode()).decode().rstrip("=")

    import json

    ws = stack.new_workspace().workspace_id
    root = create_token(stack.engine, "root").token
    base = f"/admin/v1/workspaces/{ws}"
    # lists by (creation time, id), and lists by row id
    by_time = [cursor(["x", "y"]), cursor(["2026-12-01T00:00:00", "a"]), cursor([1]), "!!"]
    by_row = [cursor([0]), cursor([10**20]), cursor(["x"]), cursor([1.5]), cursor([None])]
    with httpx.Client(
        base_url=stack.gateway_url, headers={"Authorization": f"Bearer {root}"}, timeout=10
    ) as http:
        for path, refused in (
            ("/admin/v1/workspaces", by_time),
            (f"{base}/definitions", by_time),
            (f"{base}/automations", by_time),
            (f"{base}/events", by_row),
            ("/admin/v1/audit", by_row),
            ("/admin/v1/dead-letters", by_row),
        ):
            for bad in refused:
                answer = http.get(path, params={"cursor": bad})
                assert answer.status_code == 422, (path, bad, answer.text)
        for since in ("0001-01-01T00:00:00+05:00", "9999-12-31T23:59:59-05:00"):
            for path in (f"{base}/events", f"{base}/export"):
                answer = http.get(path, params={"since": since})
                assert answer.status_code == 422, (path, since, answer.text)
        assert http.get(f"/admin/v1/dead-letters/{10**20}").status_code == 422
        assert http.get("/admin/v1/dead-letters/0").status_code == 422
        huge = http.post(f"{base}/write-key/rotate", json={"grace_s": 10**11})
        assert huge.status_code == 422, huge.text
        long_id = "a" * 500
        for path in (f"{base}/automations/{long_id}", f"{base}/definitions/{long_id}"):
            assert http.get(path).status_code == 404
