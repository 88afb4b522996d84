"""A real browser for the tests: headless Chromium (Debian's `chromium` and `chromium-driver`, installed
by `make`), driven with Selenium; screenshots land in ``test-artifacts/``."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTEFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


@contextmanager
def chromium(width: int = 1400, height: int = 900) -> Iterator[webdriver.Chrome]:
    """A headless Chromium session (the system's browser and driver: nothing is downloaded)."""
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), "run `make test`: it installs chromium and chromium-driver"
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save the page as ``test-artifacts/<name>.png``; its path."""
    ARTEFACTS.mkdir(exist_ok=True)
    path = ARTEFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def dashboard_url(data_dir: Path, timeout_s: float = 120.0) -> str:
    """The address a running `lalin up` published for its dashboard in ``data_dir/runtime.json`` (ends with /)."""
    deadline, url = time.monotonic() + timeout_s, None
    while url is None and time.monotonic() < deadline:
        with contextlib.suppress(OSError, ValueError):  # not written yet, or being replaced
            url = json.loads((data_dir / "runtime.json").read_text()).get("web")
        time.sleep(0.2)
    assert url, "lalin up did not publish its dashboard's address"
    return str(url)


def wait_until(driver: webdriver.Chrome, timeout_s: float, condition: Callable[[webdriver.Chrome], object], what: str,
               poll_s: float = 0.5) -> object:
    """Wait up to ``timeout_s`` seconds for ``condition`` (a WebDriverWait condition; an element missing or gone
    stale while a page loads counts as not yet); on a timeout, fail naming
    ``what`` was awaited, with the page's address and text and a screenshot ``test-artifacts/timeout-<what>.png``."""
    try:
        # a click that loads another page can leave the condition holding an element of the old one: look again
        return WebDriverWait(driver, timeout_s, poll_frequency=poll_s,
                             ignored_exceptions=(NoSuchElementException, StaleElementReferenceException)).until(condition)
    except TimeoutException:
        shot = screenshot(driver, "timeout-" + "".join(c if c.isalnum() else "-" for c in what)[:60])
        try:
            text = driver.find_element(By.TAG_NAME, "body").text
        except WebDriverException as error:  # the page may be gone: say so in the failure
            text = f"(no page text: {error!r})"
        raise AssertionError(f"waited {timeout_s:g} s for {what}; at {driver.current_url} (screenshot {shot}):\n"
                             f"{text[-3000:]}") from None
