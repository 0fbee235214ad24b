"""OpenAPI descriptions of the vendor routes (their bodies are read raw, so FastAPI cannot
derive them)."""

from __future__ import annotations

from typing import Any

STRING = {"type": "string"}
OBJECT = {"type": "object", "additionalProperties": True}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {"application/json": {"schema": schema}},
        }
    }


def errors(shape: dict[str, Any], *codes: int) -> dict[int | str, dict[str, Any]]:
    meaning = {
        400: "Malformed or invalid body; nothing was queued.",
        401: "Missing or wrong credentials.",
        413: "Body too large; nothing was queued.",
        422: "A parameter is invalid; nothing was queued.",
        429: "The queue is full, or the workspace is over its rate limit; retry after Retry-After.",
        503: "The queue is unavailable; retry after Retry-After.",
    }
    return {
        code: {"description": meaning[code], "content": {"application/json": {"schema": shape}}}
        for code in codes
    }


BUNCE_BODY = json_body(
    {
        "type": "object",
        "required": ["event_id", "payload"],
        "properties": {
            "event_id": {
                "type": "string",
                "format": "uuid",
                "description": "id of a definition (sluice definition add --format bunce)",
            },
            "payload": {
                "type": "object",
                "required": ["email"],
                "properties": {"email": {"type": "string", "format": "email"}},
                "additionalProperties": True,
            },
        },
    },
    "Bunce: trigger a defined event",
)
BUNCE_ERRORS = errors(
    {
        "type": "object",
        "properties": {"success": {"type": "boolean"}, "message": STRING, "error": OBJECT},
    },
    400,
    401,
    413,
    422,
    429,
    503,
)

USER_EVENT_BODY = json_body(
    {
        "type": "object",
        "required": ["user", "event"],
        "properties": {
            "user": {"type": "object", "properties": {"email": STRING, "_id": STRING}},
            "event": {
                "type": "object",
                "minProperties": 1,
                "maxProperties": 1,
                "properties": {
                    name: OBJECT
                    for name in ("update", "login", "generic", "confirmation", "email_open")
                },
            },
        },
    },
    "user/event API: one event for a user",
)
USER_EVENT_ERRORS = errors(
    {
        "type": "object",
        "properties": {
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"message": STRING, "description": STRING},
                },
            }
        },
    },
    400,
    401,
    413,
    429,
    503,
)

CLEVERTAP_BODY = json_body(
    {
        "type": "object",
        "required": ["business_event", "name", "properties", "c-by", "when"],
        "properties": {
            "business_event": STRING,
            "name": STRING,
            "c-by": STRING,
            "properties": {
                "type": "object",
                "additionalProperties": {"type": "string", "maxLength": 512},
            },
            "when": {"description": '"now", epoch seconds or an ISO 8601 time'},
        },
    },
    "CleverTap: raise bulletins for a defined business event",
)
CLEVERTAP_ERRORS = errors(
    {
        "type": "object",
        "properties": {"status": STRING, "error": STRING, "code": {"type": "integer"}},
    },
    400,
    401,
    413,
    429,
    503,
)

BENTO_BODY = json_body(
    {
        "type": "object",
        "required": ["events"],
        "properties": {
            "events": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1000,
                "items": {
                    "type": "object",
                    "required": ["type", "email"],
                    "properties": {
                        "type": STRING,
                        "email": STRING,
                        "fields": OBJECT,
                        "details": OBJECT,
                    },
                },
            }
        },
    },
    "Bento: 1 to 1000 events",
)
BENTO_ERRORS = errors({"type": "object", "properties": {"error": STRING}}, 400, 401, 413, 429, 503)

PLATFORMLY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {
                    "type": "object",
                    "required": ["api_key", "action", "value"],
                    "properties": {
                        "api_key": STRING,
                        "action": {"type": "string", "enum": ["contact_event_fire"]},
                        "value": {
                            "type": "string",
                            "description": 'JSON: {"contact_id" | "email", "event", "options"}',
                        },
                    },
                }
            }
        },
    }
}
PLATFORMLY_ERRORS = errors(
    {"type": "object", "properties": {"status": STRING, "message": STRING}}, 400, 401, 413, 429, 503
)
