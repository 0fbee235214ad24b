"""The restrictions, as pure decisions over small storage ports (docs/architecture.md §3).

Each rule decides from plain data and a small port (``ports``); ``backends`` (Redis and
in memory) implement the ports, and ``engine`` applies every rule to a batch. This package
imports no celery, sqlalchemy or fastapi (``tests/unit/test_layers.py`` checks).
"""

from sluice.rules.verdicts import Reason, Status, Verdict

__all__ = ["Reason", "Status", "Verdict"]
