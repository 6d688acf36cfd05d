"""Browser fixtures: headless Debian Chromium driven by Playwright (never a downloaded browser).

`make test` installs Chromium with apt where it is missing; where that is impossible these tests skip, saying why.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.viewer.helpers import CHROMIUM, CHROMIUM_ARGS, Browser


@pytest.fixture(scope="session")
def _chromium() -> Iterator[object]:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium with apt where it can"
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def browser(_chromium) -> Iterator[Browser]:
    b = Browser(_chromium)
    yield b
    b.close_all()
