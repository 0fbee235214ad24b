"""Text logs keep one line per message, whoever logs it: a request's text with a line
break (a user id, say) cannot forge a line of its own. Tracebacks keep their lines."""

from __future__ import annotations

import subprocess
import sys

from sluice.logs import one_line

FORGED = "2026-12-07 00:00:00,000 CRITICAL sluice: forged"

PROGRAM = f"""
import logging
from uvicorn.logging import DefaultFormatter
from sluice.logs import configure_logging

configure_logging("text")
served = logging.getLogger("uvicorn.error")  # with a handler of its own, as uvicorn's is
handler = logging.StreamHandler()
handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s", use_colors=False))
served.addHandler(handler)
served.propagate = False
logging.getLogger("sluice.worker").warning("rejected event of %s", "u1\\n{FORGED}")
served.info("%s", "u2\\r\\n{FORGED}")
try:
    raise ValueError("boom")
except ValueError:
    logging.getLogger("sluice.worker").exception("failed")
"""


def test_a_line_break_in_a_logged_value_cannot_forge_a_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROGRAM], capture_output=True, text=True, timeout=60, check=True
    )
    lines = result.stderr.splitlines()
    assert not [line for line in lines if line.startswith(FORGED)], result.stderr
    assert any(line.endswith("rejected event of u1\\n" + FORGED) for line in lines), lines
    assert any(line.endswith("u2\\r\\n" + FORGED) for line in lines), lines
    assert "Traceback (most recent call last):" in lines  # a traceback keeps its lines
    assert "ValueError: boom" in lines


def test_control_characters_are_escaped_and_tabs_kept() -> None:
    assert one_line("a\tb\x1b[31m\u2028\x7f") == "a\tb\\x1b[31m\\u2028\\x7f"
    assert one_line("plain text, ünïcode") == "plain text, ünïcode"
