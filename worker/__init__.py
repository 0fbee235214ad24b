"""The Sluice worker: Celery app and tasks, persistence, the ``sluice`` command, settings."""
