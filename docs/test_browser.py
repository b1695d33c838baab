"""The built site as a reader's browser shows it: headless Chromium, driven by Selenium.

Run by ``nox -s docs`` after the build (it reads ``docs/_build/html``). It opens the RNN's
derivation and its side-by-side page over a local HTTP server, waits for MathJax, and checks that
the maths rendered (no raw TeX in the visible text, no MathJax error, every equation number of
the page displayed), that an equation link lands on its equation and a code link on its source
line; then the same rendering checks on every other derivation and side-by-side page.
Screenshots go to ``docs/_build/screenshots/``. Without Debian's ``chromium`` and
``chromium-driver`` (``.ci/run`` installs them) the tests skip, saying so.
"""

from __future__ import annotations

import functools
import http.server
import pathlib
import re
import shutil
import sys
import tempfile
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SITE = ROOT / "docs" / "_build" / "html"
SCREENSHOTS = ROOT / "docs" / "_build" / "screenshots"
sys.path.insert(0, str(ROOT / "docs" / "_ext"))

import equation_tags  # noqa: E402  (docs/_ext, the grammar the build uses)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="the browser test needs Debian's chromium and chromium-driver "
           "(apt-get install chromium chromium-driver; .ci/run installs them): "
           f"chromium {'found' if CHROMIUM else 'not found'}, "
           f"chromedriver {'found' if CHROMEDRIVER else 'not found'}")

# TeX that must never reach the reader as text: the source of an unrendered equation
RAW_TEX = re.compile(r"\$\$|\\(tag|mathcal|lbrace|rbrace|frac|sum|odot|qquad|begin|top)\b")
MODEL = "rnn"


@pytest.fixture(scope="module")
def site() -> str:
    """The built site over HTTP on the loopback address, as ``python -m http.server`` serves it
    (MathJax's fonts are not loaded from file:// pages)."""
    if not (SITE / "index.html").exists():
        pytest.fail(f"no built site in {SITE}: run `nox -s docs` (it builds, then tests)")
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):   # noqa: A002  (the signature of the base class)
        pass


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="arrayhf-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1400,1000", "--hide-scrollbars", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def open_typeset(browser, url: str) -> None:
    """Load ``url`` and wait until MathJax has typeset the page."""
    browser.get(url)
    wait_typeset(browser)


def wait_typeset(browser) -> None:
    """Wait until MathJax has typeset the page that is open (and the site's script has fitted
    the equations to the column, which it does right after)."""
    url = browser.current_url
    outcome = browser.execute_async_script("""
        const done = arguments[arguments.length - 1];
        if (!window.MathJax || !MathJax.startup) { done("MathJax did not load"); return; }
        const loaded = new Promise((resolve) => document.readyState === "complete" ? resolve()
                                   : window.addEventListener("load", resolve));
        loaded.then(() => MathJax.startup.promise)
              .then(() => setTimeout(() => done("ok"), 0), (error) => done(String(error)));""")
    assert outcome == "ok", f"{url}: {outcome}"
    # the theme scrolls smoothly; the test's clicks and checks want the scroll done at once
    browser.execute_script("document.documentElement.style.scrollBehavior = 'auto'")


def screenshot(browser, name: str) -> pathlib.Path:
    path = SCREENSHOTS / f"{name}.png"
    browser.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


# the equation number MathJax displays in each tagged equation, read from what is drawn (CHTML
# draws each character as the CSS content of an mjx-c element's ::before), if the number lies
# inside the column, where the reader sees it without scrolling the equation sideways
DISPLAYED_LABELS = """
    const labels = {};
    for (const block of document.querySelectorAll('div.math[id^="eq-"]')) {
        const label = block.querySelector('mjx-labels');
        if (label === null) { labels[block.id] = null; continue; }
        const column = (block.closest('.math-wrapper') || block).getBoundingClientRect();
        const drawn = label.getBoundingClientRect();
        const text = Array.from(label.querySelectorAll('mjx-c'))
            .map((c) => getComputedStyle(c, '::before').content.replace(/^"|"$/g, '')).join('');
        const inside = drawn.left >= column.left - 1 && drawn.right <= column.right + 1;
        labels[block.id] = inside ? text : `${text}, cut off by the column's edge`;
    }
    return labels;"""


def rendered_maths(browser) -> dict:
    return browser.execute_script("""
        return {text: document.body.innerText,
                formulas: document.querySelectorAll('mjx-container').length,
                errors: Array.from(document.querySelectorAll('mjx-merror'))
                             .map((e) => e.getAttribute('data-mjx-error') || e.textContent)};""")


def tags_of(model: str) -> list[str]:
    return [d.tag for d in equation_tags.definitions(ROOT / "derivations" / f"{model}.md")]


def check_maths(browser, tags: list[str]) -> None:
    maths = rendered_maths(browser)
    assert maths["formulas"] > 0, "MathJax rendered no formula"
    assert not maths["errors"], f"MathJax errors: {maths['errors']}"
    raw = sorted(set(match.group(0) for match in RAW_TEX.finditer(maths["text"])))
    assert not raw, f"raw TeX in the visible text: {raw}"
    labels = browser.execute_script(DISPLAYED_LABELS)
    expected = {f"eq-{tag}": f"({tag})" for tag in tags}
    shown = {anchor: labels.get(anchor) for anchor in expected}
    assert shown == expected, f"equation numbers displayed {shown}, expected {expected}"


def lands_on(browser, element_id: str) -> bool:
    """Whether the page opened scrolled (within 10 s) so that ``element_id`` is at the top of the
    window, where a link's target belongs (the theme leaves a margin of a few lines above it)."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    def on_screen(driver) -> bool:
        return driver.execute_script("""
            const element = document.getElementById(arguments[0]);
            if (element === null || document.readyState !== 'complete') return false;
            const box = element.getBoundingClientRect();
            return box.top >= 0 && box.top < window.innerHeight / 4;""", element_id)
    try:
        WebDriverWait(browser, 10, poll_frequency=0.2).until(on_screen)
    except TimeoutException:
        return False
    return True


def test_the_derivation_shows_its_maths_rendered_with_every_equation_number(browser, site):
    open_typeset(browser, site + f"derivations/{MODEL}.html")
    check_maths(browser, tags_of(MODEL))
    browser.execute_script("document.getElementById('eq-R4').scrollIntoView({block: 'start'});"
                           "window.scrollBy(0, -200)")   # with the text that leads to (R4)
    screenshot(browser, f"{MODEL}-derivation")


def _pages_with_maths() -> list[tuple[str, str]]:
    """(page, derivation) for every derivation and every side-by-side page but the RNN's, which
    the tests below open anyway."""
    derivations = sorted(path.stem for path in (ROOT / "derivations").glob("*.md")
                         if "$" in path.read_text())    # a page without maths loads no MathJax
    models = [name for name in derivations if (ROOT / "arrayhf" / "models" / f"{name}.py").exists()]
    pages = [(f"derivations/{name}.html", name) for name in derivations]
    pages += [(f"side-by-side/{name}.html", name) for name in models]
    return [(page, name) for page, name in pages if name != MODEL]


@pytest.mark.parametrize(("page", "derivation"), _pages_with_maths())
def test_every_page_of_equations_shows_its_maths_rendered(browser, site, page, derivation):
    open_typeset(browser, site + page)
    check_maths(browser, tags_of(derivation))


def test_the_side_by_side_page_shows_each_equation_with_its_code(browser, site):
    open_typeset(browser, site + f"side-by-side/{MODEL}.html")
    check_maths(browser, tags_of(MODEL))
    code = browser.execute_script("""
        const code = {};
        for (const block of document.querySelectorAll('div.math[id^="eq-"]')) {
            let next = (block.closest('.math-wrapper') || block).nextElementSibling;
            while (next && !next.classList.contains('equation-code')) {
                next = next.nextElementSibling;
            }
            code[block.id] = next ? next.innerText : '';
        }
        return code;""")
    for tag in tags_of(MODEL):
        assert f"({tag})" in code[f"eq-{tag}"], f"no line citing ({tag}) under its equation"
    screenshot(browser, f"{MODEL}-side-by-side")


def test_an_equation_link_lands_on_its_equation(browser, site):
    from selenium.webdriver.common.by import By

    open_typeset(browser, site + f"side-by-side/{MODEL}.html")
    link = browser.find_element(
        By.CSS_SELECTOR, f'.equation-code a.equation-link[href$="derivations/{MODEL}.html#eq-R9"]')
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    link.click()
    assert browser.current_url.endswith(f"derivations/{MODEL}.html#eq-R9")
    wait_typeset(browser)
    assert lands_on(browser, "eq-R9"), "the page did not scroll to equation (R9)"
    screenshot(browser, f"{MODEL}-equation-link")


def test_a_code_link_lands_on_its_source_line(browser, site):
    from selenium.webdriver.common.by import By

    open_typeset(browser, site + f"derivations/{MODEL}.html")
    link = browser.find_element(
        By.XPATH, "//div[@id='eq-R4']/following-sibling::p[contains(@class, "
                  f"'equation-citations')][1]//a[contains(@href, 'models/{MODEL}.html#L-')]")
    line = int(link.get_attribute("href").rsplit("#L-", 1)[1])
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    link.click()
    assert browser.current_url.endswith(f"source/arrayhf/models/{MODEL}.html#L-{line}")
    assert lands_on(browser, f"L-{line}"), f"the page did not scroll to line {line}"
    shown = browser.find_element(By.ID, f"L-{line}").text
    source = (ROOT / "arrayhf" / "models" / f"{MODEL}.py").read_text().splitlines()[line - 1]
    assert shown.split() == [str(line), *source.split()], (shown, source)
    assert "(R4)" in shown, f"line {line} does not cite (R4): {shown!r}"
    background = browser.execute_script(
        "return getComputedStyle(document.getElementById(arguments[0])).backgroundColor",
        f"L-{line}")
    assert background not in ("rgba(0, 0, 0, 0)", "transparent"), "the line is not highlighted"
    screenshot(browser, f"{MODEL}-source-line")
