"""The client library's public surface is small and deliberate (STYLE 7)."""

from __future__ import annotations

import producer


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
    ]
    for name in producer.__all__:
        assert getattr(producer, name).__module__.startswith("producer.")


def test_rules_import_no_frameworks() -> None:
    import subprocess
    import sys

    code = (
        "import sys, rules, rules.keys; "
        "bad = {'celery', 'sqlalchemy', 'fastapi'} & set(sys.modules); "
        "print(', '.join(sorted(bad))); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"rules imported {result.stdout}{result.stderr}"
