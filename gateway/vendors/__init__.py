"""Vendor wire formats, each under its own prefix, keeping that vendor's path, auth style,
body, limits, response and error shapes (docs/architecture.md §4)."""
