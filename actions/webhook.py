"""A signed webhook: the Standard Webhooks message (``webhook-id``, ``webhook-timestamp``,
``webhook-signature``, signed with the ``standardwebhooks`` package), POSTed once an
attempt, and what its answer means.

- 2xx: delivered;
- 410 Gone: the endpoint asks to be disabled;
- 408, 429, 5xx, a timeout or a connection error: retried, no sooner than
  ``Retry-After`` when the endpoint sends one;
- any other 4xx, and 3xx (redirects are not followed): failed, not retried.

The URL is checked when the automation is added and again before every attempt
(``sluice.actions.webhook_urls``); the addresses its host resolves to are checked when
the client connects (``sluice.actions.webhook_client``).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
from collections.abc import Mapping
from datetime import datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from ipaddress import ip_address

import aiohttp
from aiohttp.helpers import is_ip_address
from standardwebhooks import Webhook
from yarl import URL

from sluice.actions.base import Attempt, AttemptResult, Outcome, Target
from sluice.actions.webhook_urls import (
    UnresolvableHostError,
    UnsafeWebhookUrlError,
    check_webhook_url,
    refuse_non_global,
)
from sluice.producer.events import utc_now

SECRET_PREFIX = "whsec_"
MAX_ANSWER_BYTES = 65_536  # an answer body up to this is read, so its connection is reused


class WebhookAction:
    counted = False
    takes_queue = False

    def checked(self, target: str | None, queue: str | None, *, allow_private: bool) -> Target:
        if not target:
            raise ValueError("a webhook automation needs a URL")
        check_webhook_url(target, allow_private=allow_private)
        return Target(target, None, new_secret())

    async def attempt(self, attempt: Attempt) -> Outcome:
        url = attempt.target.target
        if not url:
            return Outcome(AttemptResult.FAILED, 0, error="nothing to deliver for webhook")
        refusal = _refusal(url, attempt.allow_private)
        if refusal is not None:
            return Outcome(AttemptResult.FAILED, 0, error=f"refused: {refusal}")
        secret = attempt.target.secret or ""
        headers = signed_headers(secret, attempt.trigger_id, attempt.body, utc_now())
        return await post_webhook(attempt.http, url, attempt.body, headers, utc_now())


@lru_cache(maxsize=4096)
def _refusal(url: str, allow_private: bool) -> str | None:
    """Why ``url`` is refused, by its syntax or an IP address given as its host (no DNS
    lookup: names are checked by the client's resolver when it connects); None if not.

    The host is taken as the HTTP client will connect to it (IDNA-normalised: ``127。0。0。1``
    is ``127.0.0.1``), and one the client takes for an address without resolving it must
    be a plain IP address (``2130706433`` or ``127.1`` are refused)."""
    try:
        check_webhook_url(url, allow_private=True)  # the syntax
    except UnsafeWebhookUrlError as exc:
        return str(exc)
    if allow_private:
        return None
    host = URL(url).raw_host or ""
    if not is_ip_address(host):
        return None  # a name: the resolver checks what it resolves to
    try:
        address = ip_address(host.split("%", 1)[0])  # without an IPv6 zone
    except ValueError:
        return f"{host}: an address in a form webhooks are not sent to"
    try:
        refuse_non_global(host, [str(address)])
    except UnsafeWebhookUrlError as exc:
        return str(exc)
    return None


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` + base64 of 24 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


@lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


def signed_headers(secret: str, webhook_id: str, body: bytes, now: datetime) -> dict[str, str]:
    signature = _signer(secret).sign(webhook_id, now, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def post_webhook(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    now: datetime,
) -> Outcome:
    """POST once (the session's timeout applies) and classify the answer. Only the status
    and headers matter; a short answer body is read so that the connection stays open."""
    started = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as answer:
            status, retry_after = answer.status, answer.headers.get("retry-after")
            length = answer.content_length
            if length is not None and length <= MAX_ANSWER_BYTES:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    await answer.read()  # the status counts, whatever happens to the body
    except UnsafeWebhookUrlError as exc:  # from the resolver
        return Outcome(AttemptResult.FAILED, _ms_since(started), error=f"refused: {exc}")
    except TimeoutError as exc:
        return Outcome(
            AttemptResult.RETRY, _ms_since(started), error=f"timeout ({type(exc).__name__})"
        )
    except aiohttp.ClientConnectorDNSError as exc:
        unresolved = UnresolvableHostError(f"{exc.host}: cannot be resolved ({exc.os_error})")
        return Outcome(AttemptResult.RETRY, _ms_since(started), error=str(unresolved))
    except (aiohttp.ClientError, OSError) as exc:
        return Outcome(
            AttemptResult.RETRY, _ms_since(started), error=f"{type(exc).__name__}: {exc}"
        )
    latency_ms = _ms_since(started)
    result = classify(status)
    error = None if result is AttemptResult.DELIVERED else f"HTTP {status}"
    return Outcome(result, latency_ms, status, error, retry_after_s(retry_after, now))


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
