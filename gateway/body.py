"""Reading request bodies within a size limit and a time limit (gzip allowed) and decoding
JSON."""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import orjson
from fastapi import Request

from sluice.gateway.dependencies import collaborators
from sluice.gateway.errors import ApiError, bad_request, too_large


async def read_limited(request: Request, limit_bytes: int) -> bytes:
    """The request body, decompressed if gzip; 413 past ``limit_bytes`` (after
    decompression, so a small gzip bomb is refused as well); 408 when it has not all
    arrived ``SLUICE_BODY_TIMEOUT_S`` after the route began to read it (the connection is
    closed then: the rest of the body cannot be told from a next request)."""
    declared = request.headers.get("content-length")
    encoding = request.headers.get("content-encoding", "identity").lower()
    if encoding not in ("identity", "gzip"):
        raise bad_request(f"unsupported Content-Encoding {encoding!r}", code="unsupported_encoding")
    if encoding == "identity" and declared and declared.isdigit() and int(declared) > limit_bytes:
        raise too_large(f"body is larger than {limit_bytes} bytes")
    timeout_s = collaborators(request).settings.body_timeout_s
    try:
        async with asyncio.timeout(timeout_s):
            body = await _read(request, limit_bytes)
    except TimeoutError as exc:
        raise ApiError(
            408,
            "request_timeout",
            f"the request body did not arrive within {timeout_s:g} s",
            headers={"Connection": "close"},
        ) from exc
    return _gunzip(body, limit_bytes) if encoding == "gzip" else body


async def _read(request: Request, limit_bytes: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit_bytes:
            raise too_large(f"body is larger than {limit_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip(body: bytes, limit_bytes: int) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, limit_bytes + 1)
    except zlib.error as exc:
        raise bad_request(f"body is not valid gzip: {exc}", code="invalid_body") from exc
    if len(data) > limit_bytes or inflater.unconsumed_tail:
        raise too_large(f"body is larger than {limit_bytes} bytes once decompressed")
    if not inflater.eof:  # its CRC-32 and length trailer never came: a truncated body
        raise bad_request("gzip body is truncated (no checksum trailer)", code="invalid_body")
    if inflater.unused_data:
        raise bad_request("gzip body has data after its end", code="invalid_body")
    return data


def parse_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise bad_request("the body is empty; send a JSON object", code="invalid_json")
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise bad_request(f"malformed JSON: {exc}", code="invalid_json") from exc
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object", code="invalid_json")
    return data


def encoded_size(value: Any) -> int:
    return len(orjson.dumps(value))
