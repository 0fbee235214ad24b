"""The client library's public surface is small and deliberate (docs/conventions.md #7)."""

from __future__ import annotations

from sluice import producer


def test_exported_members() -> None:
    assert sorted(producer.__all__) == [
        "BrokerTransport",
        "Event",
        "EventClient",
        "EventKind",
        "InvalidEventError",
        "MemoryTransport",
        "PublishError",
        "SluiceError",
        "Transport",
        "UnknownWorkspaceError",
    ]
    for name in producer.__all__:
        assert getattr(producer, name).__module__.startswith("sluice.producer.")
