"""One webhook attempt: the Standard Webhooks message (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``, signed with the ``standardwebhooks`` package) and what its answer
means.

- 2xx: delivered;
- 410 Gone: the endpoint asks to be disabled;
- 408, 429, 5xx, a timeout or a connection error: retried, no sooner than
  ``Retry-After`` when the endpoint sends one;
- any other 4xx, and 3xx (redirects are not followed): failed, not retried.
"""

from __future__ import annotations

import time
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson
from standardwebhooks import Webhook

from sluice.producer.events import as_utc
from sluice.worker.admin.automations import Automation
from sluice.worker.delivery.leases import EVENT_FIELDS, AttemptResult, Outcome

EVENT_TYPE = "event.triggered"
USER_AGENT = "Sluice-Webhooks/1"


def trigger_body(
    trigger_id: str, automation: Automation, event: dict[str, Any], created_at: datetime
) -> bytes:
    """What a webhook receives, as JSON (a task action gets it decoded as its argument)."""
    fields = {
        name: as_utc(event[name]) if isinstance(event.get(name), datetime) else event.get(name)
        for name in EVENT_FIELDS
    }
    payload = {
        "type": EVENT_TYPE,
        "timestamp": created_at,
        "data": {
            "trigger_id": trigger_id,
            "automation_id": automation.id,
            "workspace_id": automation.workspace_id,
            "event": fields,
        },
    }
    return orjson.dumps(payload)


def signed_headers(secret: str, webhook_id: str, body: bytes, now: datetime) -> dict[str, str]:
    signature = Webhook(secret).sign(webhook_id, now, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def post_webhook(
    client: httpx.Client, url: str, body: bytes, headers: dict[str, str], now: datetime
) -> Outcome:
    """POST once (the client's timeout applies) and classify the answer. The response body
    is not read: only its status and headers matter."""
    started = time.perf_counter()
    try:
        with client.stream("POST", url, content=body, headers=headers) as response:
            status, answer_headers = response.status_code, response.headers
    except httpx.TimeoutException as exc:
        return Outcome(
            AttemptResult.RETRY, _ms_since(started), error=f"timeout ({type(exc).__name__})"
        )
    except httpx.HTTPError as exc:
        return Outcome(
            AttemptResult.RETRY, _ms_since(started), error=f"{type(exc).__name__}: {exc}"
        )
    latency_ms = _ms_since(started)
    result = classify(status)
    retry_after = retry_after_s(answer_headers.get("retry-after"), now)
    error = None if result is AttemptResult.DELIVERED else f"HTTP {status}"
    return Outcome(result, latency_ms, status, error, retry_after)


def classify(status: int) -> AttemptResult:
    if 200 <= status < 300:
        return AttemptResult.DELIVERED
    if status == 410:
        return AttemptResult.GONE
    if 300 <= status < 500 and status not in (408, 429):
        return AttemptResult.FAILED  # redirects are not followed: retrying cannot help
    return AttemptResult.RETRY


def retry_after_s(value: str | None, now: datetime) -> float | None:
    """``Retry-After`` in seconds (delay-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None
    return max((when - now).total_seconds(), 0.0)


def _ms_since(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
