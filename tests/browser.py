"""Support for the browser tests: the system Chromium driven by Selenium, and the servers
(`mlflow server`, optuna-dashboard) they open, each on a free loopback port.

Nothing is downloaded: the driver is Debian's chromedriver named in the Service, so Selenium
Manager is never asked for one (SE_OFFLINE keeps it offline should anything reach it).
Without Chromium or chromedriver the tests are skipped, except in CI (CI set), where they fail.
NEXTDAY_CHROMIUM and NEXTDAY_CHROMEDRIVER name them where they are not Debian's /usr/bin ones.
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

import pytest

CHROMIUM = Path(os.environ.get("NEXTDAY_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("NEXTDAY_CHROMEDRIVER", "/usr/bin/chromedriver"))
T = TypeVar("T")
PHONE = {"width": 390, "height": 844, "pixelRatio": 3.0, "mobile": True}  # an iPhone 12-14


def missing() -> str | None:
    """Why no browser can run here, or None when Chromium and its driver are installed."""
    for what, path in (("Chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return (
                f"no {what} at {path} (apt-get install chromium chromium-driver, or set "
                f"NEXTDAY_{what.upper()} to its path)"
            )
    return None


def require_browser() -> None:
    """Skip the calling test when no browser is installed; in CI, fail instead."""
    reason = missing()
    if reason is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the browser tests: {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def chrome(phone: bool = False) -> Iterator:
    """A headless Chromium: a 1280 px desktop window, or with `phone` a 390 px phone screen
    (the mobile layout: a page without a viewport tag is laid out 980 px wide and shrunk).
    The browser's console is kept for `console_errors`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--window-size=1280,900",
        "--lang=en-US",
    ):
        options.add_argument(argument)
    if phone:
        options.add_experimental_option("mobileEmulation", {"deviceMetrics": PHONE})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def console_errors(driver) -> list[dict]:
    """The console's SEVERE entries since the last call (errors and failed loads)."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def full_page_screenshot(driver, path: Path) -> Path:
    """The whole page, not only the window, as a PNG at `path`."""
    metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
    size = metrics.get("cssContentSize") or metrics["contentSize"]
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(
    command: Sequence[str], port: int, log: Path, ready: str = "/", timeout: float = 120
) -> Iterator[str]:
    """Run `command` (a server told to listen on loopback `port`) until the block ends; yields
    its base URL once `ready` answers 200. Terminated afterwards, killed if it lingers; its
    output goes to `log`, quoted in the error when it never answers."""
    url = f"http://127.0.0.1:{port}"
    environment = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    with log.open("wb") as output:
        process = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, env=environment
        )
        try:
            _wait_until_up(url + ready, process, log, timeout)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(url: str, process: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}")


def settle(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 30) -> T:
    """What `read()` returns once `done` holds of it, or its last answer after `timeout`
    seconds (for the caller's assert to show): an explicit wait on a page that renders late."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.25)
        value = read()
    return value
