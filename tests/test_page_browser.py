"""The listening page in a real browser: Debian's chromium driven by Playwright, from disk.

The page comes from a real local worker run of the tiny model (one song fails on purpose); the
browser must load and decode every song through its relative link, show the failure, and render
a prompt holding markup as text. Screenshots are kept as artifacts (their paths are printed):
in $TEST_ARTIFACTS_DIR where set, else in the test's temporary folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.failing_loader import WINDOW, Loader
from worker.cli import main

CHROMIUM = shutil.which("chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="BROWSER TEST NOT RUN: no `chromium` on PATH (apt-get install chromium; `make test` does)",
    ),
]

SCRIPT_PROMPT = "<script>alert(1)</script>"
PROMPTS = f"""\
calm piano ; 1.5 ; calm.wav
{SCRIPT_PROMPT} ; 2.75 ; markup
this song will fail ; 1 ; fail.wav
"""
REQUESTED = {"calm.wav": 1.5, "markup.wav": 2.75}


@pytest.fixture(scope="module")
def batch_page(tiny_model_dir, loaded_tiny_engine, tmp_path_factory):
    work = tmp_path_factory.mktemp("listen")
    prompts = work / "prompts.txt"
    prompts.write_text(PROMPTS)
    out = work / "output"
    argv = ["--prompts", str(prompts), "--output", str(out), "--model", str(tiny_model_dir), *WINDOW]
    # The failing song: given up after its two attempts, listed.
    assert main(argv, load_engine=Loader(loaded_tiny_engine)) == 0
    return out / "index.html"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="BROWSER TEST NOT RUN: no playwright")
    with sync_api.sync_playwright() as playwright:
        # The system browser: Playwright downloads none. No sandbox, since CI runs as root.
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=["--no-sandbox", "--headless"]
        )
        yield browser
        browser.close()


def open_page(browser, url, **context_options):
    page = browser.new_context(**context_options).new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    # preload="metadata": every player settles on metadata (or an error) without a click.
    page.wait_for_function(
        "() => [...document.querySelectorAll('audio')].every(a => a.readyState >= 1 || a.error)",
        timeout=20_000,
    )
    return page, dialogs


def keep(page, name, tmp_path, capsys):
    folder = Path(os.environ.get("TEST_ARTIFACTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    page.screenshot(path=str(path), full_page=True)
    with capsys.disabled():
        print(f"\nlistening page screenshot: {path}")


def test_page_plays_every_song_and_shows_the_failure(batch_page, browser, tmp_path, capsys):
    page, dialogs = open_page(browser, batch_page.as_uri(), viewport={"width": 1280, "height": 800})
    rows = page.locator("tbody tr")
    assert rows.count() == 3

    players = page.eval_on_selector_all(
        "audio", "els => els.map(a => [a.getAttribute('src'), a.duration, a.error && a.error.code])"
    )
    assert {src: error for src, _, error in players} == {"calm.wav": None, "markup.wav": None}
    for src, duration, _ in players:
        assert duration == pytest.approx(REQUESTED[src], abs=0.1), src

    failed = rows.nth(2)
    assert failed.get_attribute("class") == "failed"
    assert failed.locator("td").first.inner_text() == "3"
    assert failed.locator(".status").inner_text() == "failed"
    assert "RuntimeError: injected fault" in failed.inner_text()
    assert failed.locator("audio").count() == 0

    assert rows.nth(1).locator("td.prompt").inner_text() == SCRIPT_PROMPT
    assert page.evaluate("document.scripts.length") == 0
    assert dialogs == []
    assert "2 of 3 songs ready, 1 failed" in page.locator(".totals").inner_text()
    keep(page, "index.png", tmp_path, capsys)


def test_page_is_keyboard_usable(batch_page, browser):
    page, _ = open_page(browser, batch_page.as_uri())
    reached = []
    for _ in range(8):
        page.keyboard.press("Tab")
        reached.append(
            page.evaluate(
                "() => { const e = document.activeElement;"
                " return [e.tagName, e.getAttribute('href') || e.getAttribute('src'),"
                " getComputedStyle(e).outlineStyle]; }"
            )
        )
    assert reached[0] == ["A", "calm.wav", "solid"]  # the focus ring shows
    assert ["AUDIO", "calm.wav"] in [entry[:2] for entry in reached]
    assert ["A", "markup.wav"] in [entry[:2] for entry in reached]


def test_page_fits_a_phone(batch_page, browser, tmp_path, capsys):
    page, dialogs = open_page(
        browser, batch_page.as_uri(), viewport={"width": 390, "height": 844}, is_mobile=True
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Rows become cards: each cell is labelled, the players span the card.
    audio = page.locator("audio").first.bounding_box()
    assert audio is not None and audio["width"] > 250
    assert dialogs == []
    keep(page, "index-phone.png", tmp_path, capsys)
