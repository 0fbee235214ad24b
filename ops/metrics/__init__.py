"""Cluster-wide metrics: counted where things happen (the worker, the deliverers, the
gateway), kept in Redis so that every process adds to the same series, and shown by the
gateway's ``GET /metrics`` in the Prometheus text format (docs/metrics.md).

- ``families``: each metric's name, type, labels and buckets (the one table);
- ``tally``: counts gathered in a process, written to Redis in one round trip;
- ``prometheus``: the Redis hashes as Prometheus metric families, read at scrape time;
- ``depth``: the gauges read from the broker and the database at scrape time.
"""
