"""The real-browser harness shared by the browser tests: Debian chromium through Playwright.

Prerequisites: the Debian ``chromium`` package (/usr/bin/chromium) and axe-core from npm in the
repository root. Missing either is a failure, not a skip. Test modules import the fixtures
(``browser``, ``open_page``, ``axe_source``) by name.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.conftest import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
AXE = REPO / "node_modules" / "axe-core" / "axe.min.js"
MODES = ("exam", "practice", "key", "flashcards")
PHONE_WIDTH = 390
DESKTOP_WIDTH = 1280


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.is_file():
        pytest.fail(f"{AXE} is missing; run `bash .ci/setup test` in {REPO}")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing; install the Debian package: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class OpenPage:
    """A page opened from file:// with every request and console error recorded.

    ``new_tab`` opens the same page again in the same browser profile (shared localStorage),
    the way a student opens a second tab."""

    def __init__(self, browser: Any, path: Path, scheme: str = "light", width: int = 1000,
                 height: int = 900, before_load: Callable[[Any], None] | None = None) -> None:
        self.url = path.resolve().as_uri()
        self.context = browser.new_context(
            color_scheme=scheme, accept_downloads=True, viewport={"width": width, "height": height}
        )
        self.requests: list[str] = []
        self.errors: list[str] = []
        self.context.route("**/*", self._route)
        self.page = self.new_tab(before_load)

    def new_tab(self, before_load: Callable[[Any], None] | None = None) -> Any:
        """Open the page in a new tab; ``before_load`` runs first (e.g. to install a fake clock)."""
        page = self.context.new_page()
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("request", lambda r: self.requests.append(r.url))
        if before_load is not None:
            before_load(page)
        page.goto(self.url)
        return page

    def _route(self, route: Any) -> None:
        if route.request.url == self.url:
            route.continue_()
        else:
            self.requests.append(route.request.url)
            route.abort()

    def outside_requests(self) -> list[str]:
        return [u for u in self.requests if u != self.url and not u.startswith("blob:")]

    def data(self) -> dict[str, Any]:
        return json.loads(self.page.locator("#quiz-data").text_content())

    def close(self) -> None:
        self.context.close()


def serious_axe_violations(page: Any, axe_source: str) -> list[str]:
    """Run axe-core in the Playwright ``page`` and describe each serious or critical violation
    (rule, impact, help text and the first targets), so a failing audit says what to fix."""
    page.add_script_tag(content=axe_source)
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[..., OpenPage]]:
    opened: list[OpenPage] = []

    def opener(path: Path, scheme: str = "light", width: int = 1000, height: int = 900,
               before_load: Callable[[Any], None] | None = None) -> OpenPage:
        page = OpenPage(browser, path, scheme, width, height, before_load)
        opened.append(page)
        return page

    yield opener
    for page in opened:
        page.close()
