"""The rules' storage ports, implemented: on Redis (``redis``, what the workers use) and in
memory (``memory``, the reference the contract tests hold Redis to)."""
