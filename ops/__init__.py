"""Operations over the stored data and the running cluster: health checks, metrics,
erasure, export, retention, dead-letter replay and stats (docs/architecture.md §1)."""
