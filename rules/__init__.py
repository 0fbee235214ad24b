"""The restrictions, as pure decisions over small storage ports (docs/architecture.md §3).

This package imports no celery, sqlalchemy or fastapi. For now it holds the outcome
vocabulary and every Redis key format; the rules themselves arrive with their ports.
"""

from sluice.rules.verdicts import Reason, Status, Verdict

__all__ = ["Reason", "Status", "Verdict"]
