"""``/docs`` works offline: a real gateway serves the Swagger UI page and its files itself,
and headless Chromium, with every name but the gateway's unresolvable and a dead proxy for
anything else, renders the operations from them."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from sluice.cli.embedded_redis import free_port
from tests.conftest import sluice_env
from tests.processes import GATEWAY_COMMAND, SluiceProcess, with_option
from tests.services import service_missing

CHROMIUM = "chromium"  # Debian's package
OFFLINE = (
    # Any name but the gateway's fails to resolve; any address but loopback goes to a proxy
    # that is not there: a page needing the internet cannot get it.
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
)


class References(HTMLParser):
    """The URLs a page loads: script sources, links, images, frames."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href") and value is not None:
                self.urls.append(value)


def references(html: str) -> list[str]:
    parser = References()
    parser.feed(html)
    return parser.urls


def chromium() -> str:
    found = shutil.which(CHROMIUM)
    if found is None:
        service_missing("Debian's chromium is not installed (apt-get install chromium)")
    return found


@pytest.fixture
def gateway_url(isolated_redis_url: str, tmp_path: Path) -> Iterator[str]:
    # The docs need no database: a file of its own keeps the test off the shared ones.
    env = sluice_env(isolated_redis_url, f"sqlite:///{tmp_path / 'docs.db'}")
    port = free_port()
    command = with_option(with_option(GATEWAY_COMMAND, "--host", "127.0.0.1"), "--port", str(port))
    gateway = SluiceProcess(command, env, tmp_path / "gateway.log").start()
    try:
        url = f"http://127.0.0.1:{port}"
        gateway.wait_for_http(f"{url}/openapi.json")
        yield url
    finally:
        gateway.stop()


def render(browser: str, url: str, profile: Path, *extra: str) -> str:
    """What headless Chromium makes of ``url``, given ten seconds of virtual time."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        *OFFLINE,
        *extra,
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_the_docs_pages_load_only_files_of_the_gateway(gateway_url: str, page: str) -> None:
    html = httpx.get(f"{gateway_url}{page}", timeout=10).text
    urls = references(html)
    assert any(url.endswith(".js") for url in urls), html
    for url in urls:
        parts = urlsplit(url)
        assert not parts.scheme and not parts.netloc, f"{page} loads {url} from elsewhere"
        assert httpx.get(f"{gateway_url}{url}", timeout=10).status_code == 200, url
    assert "https://" not in html and "http://" not in html


def test_swagger_ui_renders_the_operations_without_network(
    gateway_url: str, tmp_path: Path
) -> None:
    dom = render(chromium(), f"{gateway_url}/docs", tmp_path / "profile", "--dump-dom")
    # Swagger UI built these from /openapi.json: they are not in the page the gateway sent.
    assert 'class="swagger-ui"' in dom, dom[:2000]
    assert 'id="operations-native-track_v1_track_post"' in dom, dom[:2000]
    assert 'data-path="/v1/track"' in dom
    assert 'data-path="/v1/events/{message_id}"' in dom
    assert "Record an action a user performed" in dom  # the route's summary


def test_redoc_renders_the_operations_without_network(gateway_url: str, tmp_path: Path) -> None:
    dom = render(chromium(), f"{gateway_url}/redoc", tmp_path / "profile", "--dump-dom")
    assert "Record an action a user performed" in dom, dom[:2000]
    assert "/v1/track" in dom
