"""``server_options``: the gateway's HTTP protocol with the settings' limits, in a form
``uvicorn.run(..., workers=N)`` can hand to its worker processes (it pickles)."""

from __future__ import annotations

import functools
import pickle

from sluice.gateway.server import LimitedHttpProtocol, server_options
from sluice.settings import Settings


def test_the_options_carry_the_settings_limits_and_pickle() -> None:
    settings = Settings(max_header_bytes=4096, header_timeout_s=2.5)
    protocol = server_options(settings)["http"]
    assert isinstance(protocol, functools.partial)
    assert protocol.func is LimitedHttpProtocol
    assert protocol.keywords == {"max_header_bytes": 4096, "header_timeout_s": 2.5}
    copied = pickle.loads(pickle.dumps(protocol))
    assert (copied.func, copied.keywords) == (protocol.func, protocol.keywords)


def test_the_defaults() -> None:
    settings = Settings()
    assert (settings.max_header_bytes, settings.header_timeout_s) == (16_384, 10.0)
    assert (settings.body_timeout_s, settings.max_waits_per_workspace) == (30.0, 50)
