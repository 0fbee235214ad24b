"""What a trigger sends: the same JSON payload for a webhook body and a task argument."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from sluice.producer.events import as_utc
from sluice.store.automations import Automation
from sluice.store.schema import EVENT_COLUMNS

EVENT_TYPE = "event.triggered"
# The stored event's fields a payload carries: all but the workspace (a field of the
# payload's own) and what is kept of Segment group and alias calls.
EVENT_FIELDS = tuple(
    name for name in EVENT_COLUMNS if name not in {"workspace_id", "group_id", "previous_id"}
)


def trigger_body(
    trigger_id: str, automation: Automation, event: dict[str, Any], created_at: datetime
) -> bytes:
    """The payload, as JSON (a task action gets it decoded as its argument)."""
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
