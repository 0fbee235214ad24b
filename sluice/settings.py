"""One typed settings object, read from the environment (prefix ``SLUICE_``) once per process
entry point (docs/architecture.md §9). Nothing reads the environment at import time."""

from __future__ import annotations

import tempfile
from ipaddress import ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, PositiveFloat, PositiveInt, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from sluice.rules.engine import RulePolicy


def mask_url(url: str) -> str:
    """The URL with its password replaced by ``***`` (for logs and reprs)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SLUICE_", extra="ignore", frozen=True)

    redis_url: str = "redis://127.0.0.1:6379/0"
    broker_url: str = Field(default="", description="Celery broker; defaults to redis_url")
    database_url: str = "sqlite:///sluice.db"

    # Rule defaults (docs/architecture.md §3); per-workspace overrides may come on top.
    email_open_window_s: PositiveInt = 1200
    unknown_user_grace_s: int = Field(default=30, ge=0)
    bot_mode: Literal["drop", "flag"] = "drop"
    trigger_max_age_s: PositiveInt = 7200
    allow_private_webhooks: bool = False
    bot_networks: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDRs whose traffic is bots (comma-separated)"
    )
    claim_retention_s: PositiveInt = Field(
        default=7 * 86_400, description="how long Redis keeps order and email-open claims"
    )

    # Webhook delivery (docs/architecture.md §6).
    webhook_timeout_s: PositiveFloat = Field(default=10.0, le=60)
    webhook_max_attempts: PositiveInt = 8
    webhook_backoff_s: PositiveFloat = Field(
        default=5.0, description="wait before the first retry; doubles each attempt (jittered)"
    )
    webhook_max_backoff_s: PositiveInt = Field(
        default=300,
        description="longest backoff between attempts (a longer Retry-After is honoured, "
        "up to a day)",
    )
    webhook_disable_after_s: PositiveInt = Field(
        default=5 * 86_400, description="an endpoint failing this long is disabled"
    )
    webhook_max_in_flight: PositiveInt = Field(
        default=64, description="attempts under way at once per automation, per deliverer"
    )
    delivery_concurrency: PositiveInt = Field(
        default=512,
        description="triggers one deliverer holds at once: attempts under way, and those "
        "waiting for room under their automation's cap (each automation holds at most "
        "twice its cap, so slow endpoints cannot take all of it)",
    )

    # Queue behaviour (docs/reliability.md).
    visibility_timeout_s: PositiveInt = 900
    task_time_limit_s: PositiveInt = 150
    max_deliveries: PositiveInt = 5
    publish_timeout_s: PositiveFloat = 5.0
    pending_ttl_s: PositiveInt = 86_400
    journal_grace_s: float = Field(
        default=0,
        ge=0,
        description="a queued batch no worker took or committed for this long is published "
        "again (docs/reliability.md #1); 0: the visibility timeout plus the task time limit "
        "plus a minute; otherwise at least the visibility timeout",
    )
    journal_sweep_s: PositiveFloat = Field(default=30.0, description="how often to look")

    # Retention (docs/data-lifecycle.md): workers purge events older than this by event time.
    retention_days: int = Field(
        default=0,
        ge=0,
        description="keep events this many days (event time), then purge them with their "
        "outcomes and triggers; 0: keep everything (a workspace's retention_days overrides)",
    )
    retention_sweep_s: PositiveFloat = Field(
        default=3600.0, description="how often one worker of the cluster applies the retention"
    )
    retention_batch_events: PositiveInt = Field(
        default=2000, le=50_000, description="events purged per transaction"
    )
    retention_pause_ms: float = Field(
        default=100.0,
        ge=0,
        description="pause between purge transactions (at least as long as the last one "
        "took), so that ingestion keeps its speed",
    )

    # HTTP gateway.
    gateway_host: str = "127.0.0.1"
    gateway_port: PositiveInt = 8000
    key_cache_ttl_s: float = Field(default=30.0, ge=0)
    admin_api: bool = Field(
        default=True, description="serve the control plane under /admin/v1 (docs/admin-api.md)"
    )
    key_cache_stale_s: float = Field(default=600.0, ge=0)
    max_queue_depth: PositiveInt = Field(
        default=20_000, description="queued batches beyond which the gateway answers 429"
    )
    queue_depth_sample_s: float = Field(default=0.25, ge=0)
    group_commit_ms: float = Field(
        default=2.0, ge=0, description="gateway group-commit window; 0 publishes per request"
    )
    max_header_bytes: PositiveInt = Field(
        default=16_384,
        ge=1024,
        description="a request head (request line and headers) larger than this gets 431",
    )
    header_timeout_s: PositiveFloat = Field(
        default=10.0,
        description="a request head not received this long after the connection opened (or "
        "after the previous response) gets 408, and the connection is closed",
    )
    body_timeout_s: PositiveFloat = Field(
        default=30.0,
        description="a request body not received this long after its head gets 408, in the "
        "route's error shape",
    )
    max_waits_per_workspace: int = Field(
        default=50,
        ge=0,
        description="Prefer: wait requests of one workspace waiting at once, per gateway "
        "process; past it a request is answered at once, as without the preference",
    )
    rate_limit_window_s: PositiveInt = Field(
        default=1,
        description="a workspace's rate_limit_per_s is counted over windows this long: it may "
        "queue rate_limit_per_s times this many events in any such window (its largest request)",
    )

    # Logs, in every process (sluice.logs, docs/operations.md).
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="text: readable lines; json: one JSON object a line (timestamp, level, "
        "logger, message, exception) with workspace_id, batch_id, message_id and trigger_id "
        "where known",
    )

    # Health checks (docs/operations.md).
    deliverer_heartbeat_path: Path = Field(
        default_factory=lambda: Path(tempfile.gettempdir()) / "sluice-deliverer.heartbeat",
        description="the file `sluice deliverer` touches every poll (a delivering `sluice "
        "worker` too, when this is set); `sluice check deliverer` reads its age",
    )

    @field_validator("bot_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("bot_networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ip_network(cidr, strict=False)  # ValueError names the bad entry
        return value

    def lost_batch_after_s(self) -> float:
        """How long a queued batch may go untouched before it counts as lost: longer than a
        killed worker's message takes to come back, a retry's countdown or a time limit."""
        return self.journal_grace_s or float(
            self.visibility_timeout_s + self.task_time_limit_s + 60
        )

    def rule_policy(self) -> RulePolicy:
        """The rule defaults every workspace starts from."""
        return RulePolicy(
            email_open_window_s=self.email_open_window_s,
            unknown_user_grace_s=self.unknown_user_grace_s,
            bot_mode=self.bot_mode,
        )

    @model_validator(mode="after")
    def _grace_outlasts_redelivery(self) -> Settings:
        # A shorter grace would publish again batches that are only waiting to come back
        # from a killed worker (docs/reliability.md #1).
        if 0 < self.journal_grace_s < self.visibility_timeout_s:
            raise ValueError(
                "SLUICE_JOURNAL_GRACE_S must be 0 (derived) or at least SLUICE_VISIBILITY_TIMEOUT_S"
            )
        return self

    @model_validator(mode="before")
    @classmethod
    def _broker_defaults_to_redis(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("broker_url"):
            data = {
                **data,
                "broker_url": data.get("redis_url") or cls.model_fields["redis_url"].default,
            }
        return data

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, mask_url(value) if name and name.endswith("_url") else value
