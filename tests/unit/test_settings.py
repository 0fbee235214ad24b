"""Settings: environment with the SLUICE_ prefix, documented defaults, masked secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluice.settings import Settings


def test_documented_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLUICE_REDIS_URL", "SLUICE_BROKER_URL", "SLUICE_DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert (
        settings.email_open_window_s,
        settings.unknown_user_grace_s,
        settings.bot_mode,
        settings.trigger_max_age_s,
        settings.allow_private_webhooks,
    ) == (1200, 30, "drop", 7200, False)
    assert settings.broker_url == settings.redis_url


def test_environment_and_broker_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_REDIS_URL", "redis://cache:6379/2")
    monkeypatch.delenv("SLUICE_BROKER_URL", raising=False)
    monkeypatch.setenv("SLUICE_BOT_MODE", "flag")
    settings = Settings()
    assert settings.broker_url == "redis://cache:6379/2"
    assert settings.bot_mode == "flag"
    monkeypatch.setenv("SLUICE_BROKER_URL", "amqp://guest:guest@rabbit:5672//")
    assert Settings().broker_url.startswith("amqp://")


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_BOT_MODE", "maybe")
    with pytest.raises(ValueError, match="bot_mode"):
        Settings()


def test_passwords_are_masked_in_repr() -> None:
    settings = Settings(
        database_url="postgresql://sluice:s3cret@db/sluice",
        redis_url="redis://:hunter2@redis:6379/0",
    )
    text = repr(settings)
    assert "s3cret" not in text and "hunter2" not in text
    assert "postgresql://sluice:***@db/sluice" in text


def test_the_journal_grace_outlasts_a_redelivery() -> None:
    assert Settings().lost_batch_after_s() == 900 + 150 + 60
    assert Settings(journal_grace_s=1000).lost_batch_after_s() == 1000
    with pytest.raises(ValidationError, match="SLUICE_JOURNAL_GRACE_S"):
        Settings(journal_grace_s=60)
