"""Sluice: event ingestion for marketing automation.

One import package, in layers that import only those below them (docs/architecture.md):
``sluice.producer`` (the event model, the queue envelope and ``EventClient``: the light
client), ``sluice.rules`` (the restrictions as pure decisions), ``sluice.worker``
(persistence, ingestion and trigger delivery on Celery) and ``sluice.gateway`` (the HTTP
API) side by side over them, and ``sluice.cli`` on top.
"""
