"""A real browser for page tests (not a test module): Debian's headless Chromium driven by selenium through
``/usr/bin/chromedriver`` (no download at run time), and the checks of a listening report
(utils/evaluation/report.py) opened from ``file://`` as a user would.

``.ci/run`` installs ``chromium`` and ``chromium-driver`` and sets ``REQUIRE_BROWSER=1``, under which a
missing browser fails the tests that need one; elsewhere they skip, saying what is missing
(:func:`require_browser`)."""

import base64
import contextlib
import os
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
import soundfile as sf

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
LOAD_SECONDS = 30

# Every player's state once the page has settled: loaded metadata, or failed for good
MEDIA_STATE = """
return Array.from(document.querySelectorAll("audio")).map((audio) => ({
  src: audio.currentSrc || audio.src, readyState: audio.readyState, duration: audio.duration,
  error: audio.error ? audio.error.code : null, networkState: audio.networkState}));
"""
IMAGE_STATE = """
return Array.from(document.images).map((img) => ({src: img.currentSrc || img.src, complete: img.complete,
  width: img.naturalWidth}));
"""


def browser_missing() -> str | None:
    """Why no browser test can run here (None when one can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -r requirements.txt)"
    for path in (CHROMIUM, CHROMEDRIVER):
        if not (os.path.exists(path) or shutil.which(Path(path).name)):
            return f"{path} is missing (apt-get install chromium chromium-driver; .ci/run does it as root)"
    return None


def require_browser() -> None:
    """Skip the calling test when no browser can run here (fail instead under ``REQUIRE_BROWSER=1``)."""
    reason = browser_missing()
    if reason is not None:
        (pytest.fail if os.environ.get("REQUIRE_BROWSER") == "1" else pytest.skip)(f"no browser: {reason}")


@contextlib.contextmanager
def headless_chromium():
    """A selenium driver of headless Chromium that keeps the console log (see :func:`require_browser`)."""
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver_path = CHROMEDRIVER if os.path.exists(CHROMEDRIVER) else shutil.which("chromedriver")
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _file(url: str) -> Path:
    return Path(unquote(urlparse(url).path))


def _settled(driver) -> bool:
    return all(
        m["readyState"] > 0 or m["error"] or m["networkState"] == 3
        for m in driver.execute_script(MEDIA_STATE)
    )


def open_page(driver, page: Path) -> None:
    """Load ``page`` from ``file://`` and wait until every player has loaded its metadata or failed."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(page.resolve().as_uri())
    with contextlib.suppress(TimeoutException):  # what has not settled is reported by check_page
        WebDriverWait(driver, LOAD_SECONDS).until(_settled)


def check_page(driver) -> list[str]:
    """What is wrong with the loaded page: not the report (e.g. Chromium's error page for a missing file),
    players that cannot play or whose duration is not their file's, images that did not load, console
    errors (empty: nothing)."""
    if not driver.execute_script("return document.getElementById('utterances') !== null"):
        return [f"page not loaded: {driver.current_url} shows no utterance table ({driver.title!r})"]
    problems = []
    for media in driver.execute_script(MEDIA_STATE):
        path = _file(media["src"])
        if media["readyState"] == 0 or media["error"]:
            problems.append(
                f"audio {path} not playable (readyState {media['readyState']}, error {media['error']})"
            )
        elif abs(media["duration"] - sf.info(str(path)).duration) > 0.01:
            problems.append(f"audio {path}: duration {media['duration']} s is not the file's")
    for image in driver.execute_script(IMAGE_STATE):
        if not image["complete"] or image["width"] == 0:
            problems.append(f"image {_file(image['src'])} not loaded")
    problems += [
        f"console: {entry['message']}" for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
    ]
    return problems


def screenshot(driver, path: Path) -> Path:
    """A PNG of the whole page (beyond the window), through the DevTools protocol."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
    )
    path.write_bytes(base64.b64decode(shot["data"]))
    return path
