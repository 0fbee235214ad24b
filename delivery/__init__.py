"""Trigger delivery: claiming due triggers, attempting their actions and recording the
attempts, in one event loop per deliverer (docs/architecture.md §6)."""
