"""Segment group and alias calls sent by the official Segment SDK keep groupId and previousId:
stored by a real worker, shown by the gateway's GET /v1/events/{id}."""

from __future__ import annotations

import httpx
from segment.analytics.client import Client as SegmentClient
from sqlalchemy import select

from sluice.store.schema import events
from tests.conftest import Stack


def test_the_segment_sdk_group_and_alias_calls_keep_their_ids(stack: Stack) -> None:
    workspace = stack.new_workspace()
    errors: list[Exception] = []
    client = SegmentClient(
        write_key=workspace.write_key,
        host=stack.gateway_url,
        sync_mode=True,
        max_retries=1,
        on_error=lambda error, _batch: errors.append(error),
    )
    sent = [
        client.identify("sdk-user", {"email": "sdk@example.com"}),
        client.group(
            user_id="sdk-user",
            group_id="acme-inc",
            traits={"name": "Acme Inc", "email": "billing@acme.example", "seats": 40},
        ),
        client.alias(previous_id="anon-7f3a", user_id="sdk-user"),
        client.group(user_id="sdk-user", group_id=1234),  # numeric ids are text, as Segment's
    ]
    assert not errors
    assert all(ok for ok, _message in sent)
    _identify, group, alias, numeric = (message["messageId"] for _ok, message in sent)
    stack.wait_for_outcomes(workspace.workspace_id, [group, alias, numeric])

    with httpx.Client(
        base_url=stack.gateway_url, auth=(workspace.write_key, ""), timeout=10
    ) as http:
        shown = {m: http.get(f"/v1/events/{m}").json() for m in (group, alias, numeric)}
    assert {m: (s["status"], s["kind"], s["name"]) for m, s in shown.items()} == {
        group: ("accepted", "custom", "group"),
        alias: ("accepted", "custom", "alias"),
        numeric: ("accepted", "custom", "group"),
    }
    assert (shown[group]["group_id"], shown[group]["previous_id"]) == ("acme-inc", None)
    assert (shown[alias]["previous_id"], shown[alias]["group_id"]) == ("anon-7f3a", None)
    assert shown[numeric]["group_id"] == "1234"

    with stack.engine.connect() as conn:
        row = conn.execute(
            select(events).where(
                events.c.workspace_id == workspace.workspace_id, events.c.message_id == group
            )
        ).one()
    assert (row.user_id, row.group_id) == ("sdk-user", "acme-inc")
    assert row.traits == {"name": "Acme Inc", "email": "billing@acme.example", "seats": 40}
    assert row.email is None  # the group's address is not the user's
