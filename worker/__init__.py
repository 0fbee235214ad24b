"""The Sluice worker: settings and persistence (``db``), action types (``actions``),
administration (``admin``), the two stages (``ingest``, ``delivery``), and the Celery app
with its thin tasks on top (docs/architecture.md §1)."""
