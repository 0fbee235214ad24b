"""The examples of the five vendor API documents Sluice's formats follow, replayed as written.

Valid examples get the vendor's success answer, and their canonical events are read back
from the queue. Malformed ones get a clear error in the vendor's shape, and nothing is
queued."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from sluice.actions import Action
from sluice.producer.wire import INGEST_QUEUE
from sluice.settings import Settings
from sluice.store.automations import add_automation
from sluice.store.definitions import add_definition
from sluice.store.workspaces import create_workspace
from tests.services import keys_besides_metrics

SEED_EVENT_ID = "9bb6215c-e2b1-4e51-abff-3a96ca185088"


@dataclass
class Vendor:
    client: TestClient
    redis_url: str
    workspace_id: str
    key: str

    def queued(self) -> list[dict[str, Any]]:
        """Canonical events on the queue, oldest first."""
        found = []
        for raw in reversed(redis.Redis.from_url(self.redis_url).lrange(INGEST_QUEUE, 0, -1)):
            message = orjson.loads(raw)
            args = orjson.loads(base64.b64decode(message["body"]))[0]
            found += args[0]["events"]
        return found


@pytest.fixture
def vendor(isolated_redis_url: str, database_url: str, engine: Engine) -> Iterator[Vendor]:
    from sluice.gateway import create_app

    workspace = create_workspace(engine, "vendors")
    ws = workspace.workspace_id
    # Bunce's seed uses this event id; keep it, as a migrating user would (--id).
    add_definition(
        engine,
        ws,
        "bunce",
        "Purchase",
        definition_id=SEED_EVENT_ID,
        params={"date_purchased": "timestamp"},
    )
    add_definition(engine, ws, "clevertap", "Program Released", required=["program_id"])
    add_definition(engine, ws, "clevertap", "Product Launched", required=["product_category"])
    settings = Settings(redis_url=isolated_redis_url, database_url=database_url)
    with TestClient(create_app(settings)) as client:
        yield Vendor(client, isolated_redis_url, ws, workspace.write_key)


def nothing_queued(vendor: Vendor) -> bool:
    return keys_besides_metrics(redis.Redis.from_url(vendor.redis_url)) == 0


# --- Bunce (seed 000) -------------------------------------------------------------------

BUNCE_CURL = """{
    "event_id": "9bb6215c-e2b1-4e51-abff-3a96ca185088",
    "payload": {
        "email": "johndoe@example.com",
        "date_purchased" : "2012-09-03T14:30:00Z"
    }
}"""
BUNCE_GO = (
    '{\n "event_id": "9bb6215c-e2b1-4e51-abff-3a96ca185088",\n "payload": {\n '
    '"email": "johndoe@example.com",\n "date_purchased": 2012-09-03T14:30:00Z\n    '
    "}\n}"
)
BUNCE_JAVA = (
    '{\n "event_id": "9bb6215c-e2b1-4e51-abff-3a96ca185088",\n    "payload": '
    '{\n "email": "johndoe@example.com",\n "date_purchased": '
    "2012-09-03T14:30:00Z\n }\n}"
)


def bunce(vendor: Vendor, body: str | bytes, key: str | None = None) -> Any:
    return vendor.client.post(
        "/compat/bunce/v1/events/trigger",
        content=body,
        headers={"X-Authorization": key or vendor.key, "Content-Type": "application/json"},
    )


def test_bunce_curl_js_php_example_triggers_the_event(vendor: Vendor) -> None:
    answer = bunce(vendor, BUNCE_CURL)
    assert answer.status_code == 200
    assert {k: answer.json()[k] for k in ("success", "data", "message")} == {
        "success": True,
        "data": True,
        "message": "Event successfully triggered",
    }
    [event] = vendor.queued()
    assert (event["name"], event["email"], event["source"]) == (
        "Purchase",
        "johndoe@example.com",
        "bunce",
    )
    assert event["properties"] == {"date_purchased": "2012-09-03T14:30:00Z"}
    assert event["message_id"] == answer.json()["message_id"]


@pytest.mark.parametrize("body", [BUNCE_GO, BUNCE_JAVA], ids=["go", "java"])
def test_bunce_go_and_java_examples_with_an_unquoted_timestamp_are_refused(
    vendor: Vendor, body: str
) -> None:
    answer = bunce(vendor, body)
    assert answer.status_code == 400
    assert answer.json()["success"] is False
    assert "malformed JSON" in answer.json()["message"]
    assert "quoted" in answer.json()["error"]["message"]
    assert nothing_queued(vendor)


def test_bunce_skips_a_timestamp_in_another_format_and_names_other_type_errors(
    vendor: Vendor,
) -> None:
    skipped = bunce(vendor, BUNCE_CURL.replace("2012-09-03T14:30:00Z", "03/09/2012 14:30"))
    assert skipped.status_code == 200
    assert skipped.json()["skipped"] == ["date_purchased"]
    assert vendor.queued()[0]["properties"] == {}
    for body, field in [
        (BUNCE_CURL.replace(SEED_EVENT_ID, "00000000-0000-4000-8000-000000000000"), "event_id"),
        (BUNCE_CURL.replace('"johndoe@example.com"', '"not-an-email"'), "payload.email"),
        (
            BUNCE_CURL.replace('"date_purchased" : "2012-09-03T14:30:00Z"', '"x": 1'),
            "payload.date_purchased",
        ),
    ]:
        refused = bunce(vendor, body)
        assert refused.status_code == 422
        assert refused.json()["error"]["field"] == field
    assert bunce(vendor, BUNCE_CURL, key="sk_live_wrong").status_code == 401
    assert len(vendor.queued()) == 1


# --- the user/event API (seed 001) -------------------------------------------------------

USER_EVENT_AS_WRITTEN = """ "user": {"email": "[email protected]"}
 "event": {"update": {"firstname": "alexandru"} }"""


def user_event(vendor: Vendor, body: str) -> Any:
    return vendor.client.post(
        "/compat/user-event/v1/event/",
        content=body,
        headers={"Authorization": f"Bearer {vendor.key}", "Content-Type": "application/json"},
    )


def test_user_event_examples_without_their_braces_are_refused(vendor: Vendor) -> None:
    answer = user_event(vendor, USER_EVENT_AS_WRITTEN)
    assert answer.status_code == 400
    [error] = answer.json()["errors"]
    assert "malformed JSON" in error["message"]
    assert nothing_queued(vendor)


@pytest.mark.parametrize(
    ("event", "kind", "name", "fields"),
    [
        (
            '{"update": {"firstname": "alexandru"} }',
            "update",
            "update",
            {"traits": {"firstname": "alexandru"}},
        ),
        (
            '{"generic": {"generic": {"event_name": "my_event", "firstname": "alexandru"} } }',
            "custom",
            "my_event",
            {"properties": {"firstname": "alexandru"}},
        ),
        (
            '{"confirmation": {"orderId": "o-7"}}',
            "confirmation",
            "confirmation",
            {"properties": {"orderId": "o-7"}},
        ),
        ('{"email_open": {}}', "email_open", "email_open", {}),
        ('{"login": {"plan": "pro"}}', "login", "login", {"traits": {"plan": "pro"}}),
    ],
)
def test_user_event_examples_in_an_object_create_events(
    vendor: Vendor, event: str, kind: str, name: str, fields: dict[str, Any]
) -> None:
    answer = user_event(vendor, '{"user": {"email": "[email protected]"}, "event": ' + event + "}")
    assert answer.status_code == 200
    assert answer.json()["results"] == {
        "message": "Event created",
        "email": "Event was created for the specified user",
    }
    [queued] = vendor.queued()
    assert (queued["kind"], queued["name"], queued["email"]) == (kind, name, "[email protected]")
    for field, value in fields.items():
        assert queued[field] == value


def test_user_event_missing_event_gets_the_documented_error(vendor: Vendor) -> None:
    answer = user_event(vendor, '{"user": {"email": "[email protected]"}}')
    assert answer.status_code == 400
    assert answer.json() == {
        "errors": [
            {
                "message": "Missing event information",
                "description": "Please send event information along with user",
            }
        ]
    }
    assert nothing_queued(vendor)


# --- CleverTap (seed 002) ----------------------------------------------------------------

CLEVERTAP_EXAMPLE = """{
"business_event" : "Program Released",
"name" : "Sa Re Ga Ma episode 12",
"properties" : {
"program_id" : "234567",
"language":"Hindi",
"prev_program_id":"123457"
},
"c-by" : "[email protected]",
"when":"now"
}"""


def clevertap(vendor: Vendor, body: str, passcode: str | None = None) -> Any:
    return vendor.client.post(
        "/compat/clevertap/1/targets/trigger.json",
        content=body,
        headers={
            "X-CleverTap-Account-Id": vendor.workspace_id,
            "X-CleverTap-Passcode": passcode or vendor.key,
            "Content-Type": "application/json",
        },
    )


def test_clevertap_example_payload_raises_the_business_event(vendor: Vendor) -> None:
    answer = clevertap(vendor, CLEVERTAP_EXAMPLE)
    assert answer.status_code == 200
    assert answer.json()["status"] == "success"
    assert answer.json()["targets"] == 0  # no bulletin automation in this workspace
    [event] = vendor.queued()
    assert (event["name"], event["user_id"], event["email"]) == ("Program Released", None, None)
    assert event["properties"] == {
        "program_id": "234567",
        "language": "Hindi",
        "prev_program_id": "123457",
    }


def test_clevertap_targets_counts_the_matching_bulletin_automations(
    vendor: Vendor, engine: Engine
) -> None:
    ws = vendor.workspace_id
    for where in ({}, {"language": "Hindi"}, {"language": "Tamil"}):
        add_automation(engine, ws, "Program Released", Action.BULLETIN, filters=where)
    add_automation(engine, ws, "Product Launched", Action.BULLETIN)  # another event
    add_automation(  # a webhook is not a bulletin
        engine,
        ws,
        "Program Released",
        Action.WEBHOOK,
        target="http://127.0.0.1:9/h",
        allow_private_webhooks=True,
    )
    answer = clevertap(vendor, CLEVERTAP_EXAMPLE)
    assert (answer.status_code, answer.json()["targets"]) == (200, 2)
    three_hours_ago = int(time.time()) - 3 * 3600  # stale: it will fire nothing
    stale = CLEVERTAP_EXAMPLE.replace('"now"', str(three_hours_ago))
    assert clevertap(vendor, stale).json()["targets"] == 0


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ('{"business_event":true"}', None),  # the curl example: malformed JSON
        ('{"user_type":true}', "Business Event Not Found"),  # the Ruby/Python/PHP/Node examples
        (
            CLEVERTAP_EXAMPLE.replace("Program Released", "Unknown Event"),
            "Business Event Not Found",
        ),
        (
            CLEVERTAP_EXAMPLE.replace('"when":"now"', '"when":null'),
            '"when" has an incorrect value - null',
        ),
        (CLEVERTAP_EXAMPLE.replace(',\n"when":"now"', ""), '"when" has an incorrect value - null'),
        (
            CLEVERTAP_EXAMPLE.replace("Program Released", "Product Launched"),
            "Propertyproduct_categorymissing",
        ),
        (CLEVERTAP_EXAMPLE.replace('"234567"', "234567"), "Propertyprogram_idmust be a string"),
        (
            CLEVERTAP_EXAMPLE.replace('"Hindi"', '"' + "x" * 513 + '"'),
            "Propertylanguageis over 512 bytes",
        ),
    ],
)
def test_clevertap_errors_have_the_documented_shape(
    vendor: Vendor, body: str, error: str | None
) -> None:
    answer = clevertap(vendor, body)
    assert answer.status_code == 400
    assert answer.json()["status"] == "fail"
    assert answer.json()["code"] == 400
    if error is not None:
        assert answer.json()["error"] == error
    else:
        assert "malformed JSON" in answer.json()["error"]
    assert nothing_queued(vendor)


def test_clevertap_checks_account_and_passcode_together(vendor: Vendor) -> None:
    assert clevertap(vendor, CLEVERTAP_EXAMPLE, passcode="sk_live_wrong").status_code == 401
    other = vendor.client.post(
        "/compat/clevertap/1/targets/trigger.json",
        content=CLEVERTAP_EXAMPLE,
        headers={"X-CleverTap-Account-Id": "another-account", "X-CleverTap-Passcode": vendor.key},
    )
    assert other.status_code == 401
    assert other.json() == {"status": "fail", "error": "Invalid Credentials", "code": 401}
    assert nothing_queued(vendor)


# --- Bento (seed 003) --------------------------------------------------------------------

BENTO_EXAMPLE = """{
"events": [
{
"type": "$completed_onboarding",
"email": "[email protected]"
},
{
"type": "$completed_onboarding",
"email": "[email protected]",
"fields": {
"first_name": "Jesse",
"last_name": "Pinkman"
}
},
{
"email": "[email protected]",
"type": "$purchase",
"fields": {
"first_name": "Jesse"
},
"details": {
"unique": {
"key": "test123"
},
"value": {
"currency": "USD",
"amount": 8000
},
"cart": {
"items": [
{
"product_sku": "SKU123",
"product_name": "Test",
"quantity": 100
}
],
"abandoned_checkout_url": "https://test.com"
}
}
}
]
}"""


def bento(vendor: Vendor, body: str | bytes, site: str | None = None) -> Any:
    return vendor.client.post(
        f"/compat/bento/api/v1/batch/events?site_uuid={site or vendor.workspace_id}",
        content=body,
        auth=(vendor.key, "secret"),
        headers={"Content-Type": "application/json"},
    )


def test_bento_example_records_three_events(vendor: Vendor) -> None:
    answer = bento(vendor, BENTO_EXAMPLE)
    assert answer.status_code == 200
    assert (answer.json()["results"], answer.json()["failed"]) == (3, 0)
    events = vendor.queued()
    assert [(e["kind"], e["name"]) for e in events] == [
        ("custom", "$completed_onboarding"),
        ("custom", "$completed_onboarding"),
        ("confirmation", "$purchase"),
    ]
    assert events[1]["traits"] == {"first_name": "Jesse", "last_name": "Pinkman"}
    assert events[2]["properties"]["details"]["unique"] == {"key": "test123"}
    # The adapter says what Bento means: its events create users, a purchase names its order.
    assert [e.get("creates_user") for e in events] == [True, True, True]
    assert [e.get("order_id") for e in events] == [None, None, "test123"]


@pytest.mark.parametrize(
    ("details", "order"),
    [
        ({"unique": {"key": "k-1"}}, "k-1"),
        ({"unique": {"key": 7}}, "7"),
        ({"unique": {"key": True}}, None),  # a boolean names no order
        ({"unique": "k"}, None),
        ({}, None),
    ],
)
def test_bento_names_a_purchases_order_by_its_unique_key(
    details: dict[str, Any], order: str | None
) -> None:
    from datetime import UTC, datetime

    from sluice.gateway.vendors.bento import _to_event

    raw = {"type": "$purchase", "email": "a@example.com", "details": details}
    event = _to_event(raw, "ws", datetime.now(UTC))
    assert (event.order_id, event.creates_user) == (order, True)


def test_bento_partial_success_lists_each_failure(vendor: Vendor) -> None:
    body = orjson.dumps(
        {
            "events": [
                {"type": "$ok", "email": "a@example.com"},
                {
                    "type": "$nested",
                    "email": "b@example.com",
                    "fields": {"address": {"city": "Oslo"}},
                },
                {"type": "$no_email"},
                {"type": "$ok", "email": "c@example.com", "fields": {"plan": "pro"}},
            ]
        }
    )
    answer = bento(vendor, body)
    assert answer.status_code == 200
    assert answer.json()["results"] == 2 and answer.json()["failed"] == 2
    assert answer.json()["failures"] == [
        {"index": 1, "reason": "fields must not be nested: address"},
        {"index": 2, "reason": "email is required"},
    ]
    assert [e["email"] for e in vendor.queued()] == ["a@example.com", "c@example.com"]


@pytest.mark.parametrize(
    "body",
    [
        b'{"events": []}',
        orjson.dumps({"events": [{"type": "$x", "email": "a@b.c"}] * 1001}),
        b'{"events": [}',
    ],
)
def test_bento_refuses_empty_oversized_or_malformed_batches(vendor: Vendor, body: bytes) -> None:
    answer = bento(vendor, body)
    assert answer.status_code == 400
    assert "error" in answer.json()
    assert nothing_queued(vendor)


def test_bento_site_and_key_must_belong_together(vendor: Vendor) -> None:
    assert bento(vendor, BENTO_EXAMPLE, site="another-site").status_code == 401
    assert nothing_queued(vendor)


# --- Platform.ly (seed 004) --------------------------------------------------------------

PLATFORMLY_PHP = (
    "api_key=xxxxxxxxxxxxx&action=contact_event_fire&value=%7B%22event%22%3A0%2C%20"
    "%22email%22%3A%22john.smith%40gmail.com%22%2C%22options%22%3A%20%7B%22path%22"
    "%3A%22%2Fhome%22%7D%7D"
)


def platformly(
    vendor: Vendor, body: str, content_type: str = "application/x-www-form-urlencoded"
) -> Any:
    body = body.replace("xxxxxxxxxxxxx", vendor.key)
    return vendor.client.post(
        "/compat/platformly/", content=body, headers={"Content-Type": content_type}
    )


def test_platformly_php_and_python_example_fires_the_event(vendor: Vendor) -> None:
    answer = platformly(vendor, PLATFORMLY_PHP)
    assert answer.status_code == 200
    assert {k: answer.json()[k] for k in ("status", "message")} == {
        "status": "success",
        "message": "The action has been processed",
    }
    [event] = vendor.queued()
    assert (event["name"], event["email"]) == ("0", "john.smith@gmail.com")
    assert event["properties"] == {"path": "/home", "event_id": 0}


def test_platformly_curl_example_with_url_encoded_value_fires_the_event(vendor: Vendor) -> None:
    from urllib.parse import urlencode

    body = urlencode(
        {
            "api_key": "xxxxxxxxxxxxx",
            "action": "contact_event_fire",
            "value": '{"event":0, "email":"[email protected]","options": {"path":"/home"}}',
        }
    )
    assert platformly(vendor, body).status_code == 200
    assert vendor.queued()[0]["email"] == "[email protected]"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (
            '{\n  "api_key":"xxxxxxxxxxxxx",  //required\n  "action": "contact_event_fire"}',
            "application/json",
            400,
        ),  # the JSON-with-comments "Request Body" of the document
        (PLATFORMLY_PHP.replace("contact_event_fire", "contact_delete"), None, 400),
        (PLATFORMLY_PHP.replace("api_key=xxxxxxxxxxxxx", "api_key=wrong"), None, 401),
        ("api_key=xxxxxxxxxxxxx&action=contact_event_fire&value=%7B%22event%22%3A0%7D", None, 400),
        ("api_key=xxxxxxxxxxxxx&action=contact_event_fire&value=not-json", None, 400),
    ],
)
def test_platformly_refuses_bad_requests_in_its_shape(
    vendor: Vendor, body: str, content_type: str | None, status: int
) -> None:
    answer = platformly(vendor, body, content_type or "application/x-www-form-urlencoded")
    assert answer.status_code == status
    assert answer.json()["status"] == "error" and answer.json()["message"]
    assert nothing_queued(vendor)


# --- regressions from review --------------------------------------------------------------


@pytest.mark.parametrize(
    "when",
    ["1000000000000", "1000000000000000", str(2**62), '"9999-12-31T23:59:59-01:00"', '"soon"'],
)
def test_clevertap_when_out_of_range_is_a_400_not_a_crash(vendor: Vendor, when: str) -> None:
    answer = clevertap(vendor, CLEVERTAP_EXAMPLE.replace('"when":"now"', f'"when":{when}'))
    assert answer.status_code == 400
    assert answer.json()["error"].startswith('"when" has an incorrect value')
    assert nothing_queued(vendor)


def test_bunce_event_ids_match_whatever_their_case(vendor: Vendor) -> None:
    assert (
        bunce(vendor, BUNCE_CURL.replace(SEED_EVENT_ID, SEED_EVENT_ID.upper())).status_code == 200
    )


@pytest.mark.parametrize(
    "user", ['{"_id": {"a": 1}}', '{"_id": true}', '{"_id": 1.5}', '{"email": 7}', '{"_id": ""}']
)
def test_user_event_refuses_users_without_a_usable_identity(vendor: Vendor, user: str) -> None:
    answer = user_event(vendor, '{"user": ' + user + ', "event": {"email_open": {}}}')
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["message"] == "Missing user information"
    assert nothing_queued(vendor)


def test_platformly_refuses_junk_contact_ids_and_takes_the_path_without_slash(
    vendor: Vendor,
) -> None:
    from urllib.parse import urlencode

    junk = urlencode(
        {
            "api_key": vendor.key,
            "action": "contact_event_fire",
            "value": '{"event": 1, "contact_id": true}',
        }
    )
    assert platformly(vendor, junk).status_code == 400
    assert nothing_queued(vendor)
    answer = vendor.client.post(
        "/compat/platformly",
        content=PLATFORMLY_PHP.replace("xxxxxxxxxxxxx", vendor.key),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert answer.status_code == 200


def test_bento_failure_reasons_name_the_field(vendor: Vendor) -> None:
    answer = bento(
        vendor,
        orjson.dumps(
            {"events": [{"type": "$x", "email": "a@x.io", "fields": {"when": "x\u0000"}}]}
        ),
    )
    assert answer.json()["failures"] == [
        {"index": 0, "reason": "event: Value error, traits contains a NUL character (U+0000)"}
    ]


def test_an_order_id_longer_than_the_database_holds_is_refused_in_each_routes_shape(
    vendor: Vendor,
) -> None:
    long = "o" * 256
    answer = user_event(
        vendor,
        orjson.dumps(
            {"user": {"email": "a@example.com"}, "event": {"confirmation": {"orderId": long}}}
        ).decode(),
    )
    assert answer.status_code == 400, answer.text
    [error] = answer.json()["errors"]
    assert "orderId has 256 characters" in error["message"] + error.get("description", "")
    assert nothing_queued(vendor)

    purchase = {"type": "$purchase", "email": "a@example.com", "details": {"unique": {"key": long}}}
    answer = bento(vendor, orjson.dumps({"events": [purchase]}))
    assert (answer.json()["results"], answer.json()["failed"]) == (0, 1), answer.text
    assert "order_id" in answer.json()["failures"][0]["reason"]
    assert nothing_queued(vendor)

    fits = {**purchase, "details": {"unique": {"key": "o" * 255}}}
    assert bento(vendor, orjson.dumps({"events": [fits]})).json()["results"] == 1
