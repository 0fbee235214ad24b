"""Sluice: event ingestion for marketing automation.

One import package, in layers that import only those below them, one folder each
(docs/architecture.md §1): ``sluice.producer`` (the event model, the queue envelope and
``EventClient``: the light client), ``sluice.rules`` (the restrictions as pure decisions),
the shared basics in this package's root (settings, logs), ``sluice.actions`` (what an
automation does), ``sluice.store`` (persistence), ``sluice.ops`` (health, metrics and the
operations on stored data), the three stages side by side over them (``sluice.worker``:
ingestion on Celery; ``sluice.delivery``: trigger delivery; ``sluice.gateway``: the HTTP
API), and ``sluice.cli`` on top.
"""
