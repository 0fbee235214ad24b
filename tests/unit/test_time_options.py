"""The ISO 8601 time options of ``sluice events export`` and ``sluice purge`` (one parser)."""

from __future__ import annotations

from datetime import UTC, datetime

import click
import pytest

from sluice.cli.options import parse_instant


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-30", datetime(2026, 11, 30, tzinfo=UTC)),
        ("2026-11-30T12:00:00Z", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30T12:00:00", datetime(2026, 11, 30, 12, tzinfo=UTC)),
        ("2026-11-30T13:30:00+01:30", datetime(2026, 11, 30, 12, tzinfo=UTC)),
    ],
)
def test_times_are_read_in_utc(text: str, expected: datetime) -> None:
    parsed = parse_instant(text, "--before")
    assert parsed == expected and parsed is not None and parsed.tzinfo is UTC


def test_a_bad_time_names_its_option() -> None:
    assert parse_instant(None, "--since") is None
    with pytest.raises(click.ClickException, match="--before: 'last week' is not an ISO 8601"):
        parse_instant("last week", "--before")
