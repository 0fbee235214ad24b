"""The Sluice worker: the Celery app (``celery_app``), its thin tasks, per-process resources
(``runtime``), its bootsteps, and ingestion of batches (``ingest``) (docs/architecture.md §1)."""
