"""Persistence: engines, the schema and its migrations, and the reads and writes of every
table that more than one stage needs (docs/architecture.md §1, §8)."""
