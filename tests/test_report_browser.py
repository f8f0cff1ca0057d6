"""The analyst report in a real browser (headless Debian chromium through chromedriver): it
draws, searches, sorts and opens buyers, and ids and texts that are markup show as text and
run nothing, both with the page's Content-Security-Policy and without it (so that the
escaping itself is tested, not only the policy).

Needs the Debian packages ``chromium`` and ``chromium-driver``: ``make test`` installs them
when missing; run as root, this module installs them too. Without them (and no way to
install them) the tests fail with a message saying so; they are never skipped.

``REPORT_SCREENSHOT=path pytest tests/test_report_browser.py -k screenshot`` writes the
screenshot of docs/report.md from a 2,000-buyer world.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from riskmodel import pipeline
from test_report import XSS_IDS, embedded, report_world

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")


def ensure_chromium() -> None:
    """Debian's chromium and chromedriver, installed with apt-get when missing (as root);
    otherwise the test fails and says what to install."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return
    how = f"apt-get update && apt-get install -y {' '.join(PACKAGES)}"
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.fail(f"the report's browser tests need {CHROMIUM} and {CHROMEDRIVER} (Debian "
                    f"packages {', '.join(PACKAGES)}); install them as root: {how}",
                    pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *PACKAGES]):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            pytest.fail(f"`{' '.join(cmd)}` failed ({done.returncode}): "
                        f"{done.stderr.strip()[-2000:]}", pytrace=False)
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail(f"{how} did not install {CHROMIUM} and {CHROMEDRIVER}", pytrace=False)


def new_driver(width: int = 1400, height: int = 1000):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    ensure_chromium()
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never download anything
    opts = Options()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-extensions", f"--window-size={width},{height}",
                "--force-device-scale-factor=1"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=opts, service=Service(executable_path=str(CHROMEDRIVER)))


@pytest.fixture(scope="module")
def driver() -> Iterator:
    d = new_driver()
    try:
        yield d
    finally:
        d.quit()


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, dict]]:
    """The report as written, and a copy without its Content-Security-Policy."""
    root = tmp_path_factory.mktemp("browser")
    book, current, previous = report_world(root)
    out = root / "report.html"
    pipeline.report(book, current, out, previous=previous, detail_buyers=30,
                    buyers=list(XSS_IDS))
    text = out.read_text(encoding="utf-8")
    bare = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text)
    assert bare != text
    (root / "bare.html").write_text(bare, encoding="utf-8")
    return {"csp": (out, embedded(text)), "no-csp": (root / "bare.html", embedded(text))}


def load(driver, path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(path.as_uri())
    WebDriverWait(driver, 20).until(
        lambda d: d.execute_script("return document.body.dataset.ready === '1'"))


def rows(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, "#buyers tbody tr")


def search(driver, text: str) -> None:
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "search")
    box.clear()
    box.send_keys(text)


def shown_as(text: str | None) -> str:
    """A text as the browser's innerText shows it (white space, U+2028 included, folded)."""
    return " ".join((text or "").split())


def no_errors(driver) -> None:
    """No script error and no policy violation in the console."""
    severe = [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not severe, severe


@pytest.mark.parametrize("kind", ["csp", "no-csp"])
def test_the_page_draws(driver, pages, kind: str) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    path, data = pages[kind]
    load(driver, path)
    png = driver.get_screenshot_as_png()
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("L"), dtype=float)
    assert pixels.std() > 20  # not a blank page
    assert len(rows(driver)) == 100  # a page of rows, not the whole table
    n = len(data["buyers"])
    assert driver.find_element(By.ID, "count").text == f"{n:,} of {n:,} buyers"
    assert driver.find_element(By.ID, "page").text == f"page 1 of {-(-n // 100)}"
    charts = driver.find_elements(By.CSS_SELECTOR, "#summary svg")
    assert len(charts) == 3
    driver.find_element(By.ID, "next").click()
    assert driver.find_element(By.ID, "page").text == f"page 2 of {-(-n // 100)}"
    no_errors(driver)


def test_search_by_id_and_reason(driver, pages) -> None:
    from selenium.webdriver.common.by import By

    path, data = pages["csp"]
    load(driver, path)
    bid = data["buyers"][123]["id"]
    search(driver, bid)
    shown = rows(driver)
    assert [r.get_attribute("data-buyer") for r in shown] == [bid]
    assert shown[0].find_element(By.CSS_SELECTOR, "td").text == bid
    word = "late share 30 365"
    want = {r["id"] for r in data["buyers"]
            if any(word in (x[5] or "") for x in r["rs"])}
    search(driver, word.upper())  # case does not matter
    got = {r.get_attribute("data-buyer") for r in rows(driver)}
    assert got and got <= want and len(got) == min(len(want), 100)
    count = driver.find_element(By.ID, "count").text
    assert count.startswith(f"{len(want):,} of ")
    search(driver, "no such buyer or reason")
    assert rows(driver) == []
    no_errors(driver)


def test_open_a_buyer(driver, pages) -> None:
    from selenium.webdriver.common.by import By

    path, data = pages["csp"]
    load(driver, path)
    detail = driver.find_element(By.ID, "detail")
    assert not detail.is_displayed()
    first = rows(driver)[0]  # sorted by PD: the riskiest, with a payment history
    bid = first.get_attribute("data-buyer")
    row = next(r for r in data["buyers"] if r["id"] == bid)
    first.click()
    assert detail.is_displayed()
    assert detail.find_element(By.TAG_NAME, "h2").text == bid
    reasons = detail.find_elements(By.CSS_SELECTOR, "ol.reasons li")
    assert [li.text.split(" [")[0] for li in reasons] == [shown_as(x[5]) for x in row["rs"]]
    bars = detail.find_elements(By.CSS_SELECTOR, "#waterfall svg rect")
    base, margin, shown, rest, n_rest = row["w"]
    assert len(bars) == 2 + len(shown) + (1 if n_rest else 0)
    assert detail.find_elements(By.CSS_SELECTOR, "#history svg")
    detail.find_element(By.ID, "close").click()
    assert not detail.is_displayed()
    # a buyer without a payment history says why
    quiet = next(r for r in data["buyers"] if "h" not in r)
    search(driver, quiet["id"])
    rows(driver)[0].click()
    assert "riskiest live buyers" in driver.find_element(By.ID, "history").text
    no_errors(driver)


def test_sort_by_pd(driver, pages) -> None:
    from selenium.webdriver.common.by import By

    path, data = pages["csp"]
    load(driver, path)
    pd_of = {r["id"]: r["pd"] for r in data["buyers"]}
    header = driver.find_element(By.CSS_SELECTOR, "#buyers th[data-key=pd]")

    def shown() -> list[float]:
        return [pd_of[r.get_attribute("data-buyer")] for r in rows(driver)]

    assert header.get_attribute("aria-sort") == "descending"  # the default order
    assert shown() == sorted(shown(), reverse=True)
    assert shown()[0] == max(pd_of.values())
    header.click()
    assert header.get_attribute("aria-sort") == "ascending"
    assert shown() == sorted(shown()) and shown()[0] == min(pd_of.values())
    driver.find_element(By.CSS_SELECTOR, "#buyers th[data-key=id]").click()
    ids = [r.get_attribute("data-buyer") for r in rows(driver)]
    assert ids == sorted(ids) and ids[0] == min(pd_of)
    no_errors(driver)


@pytest.mark.parametrize("kind", ["csp", "no-csp"])
def test_markup_shows_as_text_and_runs_nothing(driver, pages, kind: str) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    path, data = pages[kind]
    load(driver, path)
    for bid in XSS_IDS:
        search(driver, bid)
        found = [r for r in rows(driver) if r.get_attribute("data-buyer") == bid]
        assert len(found) == 1, bid
        assert found[0].find_element(By.CSS_SELECTOR, "td").text == bid
        found[0].click()
        detail = driver.find_element(By.ID, "detail")
        assert detail.find_element(By.TAG_NAME, "h2").text == bid
        row = next(r for r in data["buyers"] if r["id"] == bid)
        texts = [li.text.split(" [")[0]
                 for li in detail.find_elements(By.CSS_SELECTOR, "ol.reasons li")]
        assert texts == [shown_as(x[5]) for x in row["rs"]]
        detail.find_element(By.ID, "close").click()
    industries = driver.find_elements(By.CSS_SELECTOR, "#summary svg text title")
    assert '<img src=x onerror="window.__xss=1">' in {t.get_attribute("textContent")
                                                      for t in industries}
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018
    assert driver.execute_script("return window.__xss") is None
    assert driver.execute_script("return document.querySelectorAll('img').length") == 0
    assert driver.execute_script("return document.scripts.length") == 2
    assert driver.title.startswith("Buyer risk report")
    no_errors(driver)


def test_screenshot_for_the_docs(tmp_path: Path) -> None:
    """Writes docs/img/report.png when REPORT_SCREENSHOT names the file (else only draws)."""
    from selenium.webdriver.common.by import By

    target = os.environ.get("REPORT_SCREENSHOT")
    book, current, previous = report_world(tmp_path, buyers=2000 if target else 300,
                                           seed=8, markup=False)
    out = tmp_path / "report.html"
    pipeline.report(book, current, out, previous=previous, detail_buyers=100)
    d = new_driver(1440, 1100)
    try:
        load(d, out)
        # a buyer not in default, among the riskiest (with a payment history)
        next(r for r in rows(d)
             if r.find_elements(By.CSS_SELECTOR, "td")[1].text != "D").click()
        d.execute_script("window.scrollTo(0, 0)")
        png = d.get_screenshot_as_png()
        assert d.find_element(By.ID, "detail").is_displayed()
    finally:
        d.quit()
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(png)
