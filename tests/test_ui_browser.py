"""The web view in a real browser: headless Debian chromium, driven by selenium through the system
chromedriver, against `artifactfs ui` serving a sample store. A user clicks from the home page to an
artifact, a version (its metadata and "use this version" box, a copy button clicked), a CSV preview, a
diff and the lineage graph with its legend, and sees what each page promises.
Screenshots go to the test's directory, and to $ARTIFACTFS_SCREENSHOTS when set (docs/img is made so)."""

import os
import re
import shutil
import signal
import subprocess
import sys

import pytest

from tests.ui_util import HOSTILE, make_sample

pytestmark = [pytest.mark.usefixtures("env"), pytest.mark.parametrize("backend", ["local"], indirect=True)]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def served(cli, env, tmp_path):
    make_sample(cli, tmp_path)
    proc = subprocess.Popen([sys.executable, "-m", "artifactfs", "ui", "--port", "0"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = re.search(r"http://127\.0\.0\.1:\d+/", proc.stdout.readline()).group(0)
        yield url.rstrip("/")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
    assert "Traceback" not in err, err


@pytest.fixture
def browser(tmp_path):
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are missing: run scripts/setup.sh")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-quic", "--window-size=1280,900", f"--user-data-dir={tmp_path / 'chromium'}",
                 # nothing but the loopback view may be reached
                 "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def shot(driver, tmp_path, name):
    path = tmp_path / f"{name}.png"
    height = driver.execute_script("return Math.ceil(document.body.getBoundingClientRect().bottom + 16)"
                                   " + window.outerHeight - window.innerHeight")
    driver.set_window_size(1280, min(max(height, 300), 1200))  # the page, not a screen of white below it
    driver.execute_script("window.scrollTo(0, 0)")
    driver.save_screenshot(str(path))
    if os.environ.get("ARTIFACTFS_SCREENSHOTS"):
        shutil.copy(path, os.path.join(os.environ["ARTIFACTFS_SCREENSHOTS"], f"ui-{name}.png"))


def follow(driver, element, *keys):
    """Click a link or button (or type keys into a field) and wait until the next page has replaced this one."""
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.wait import WebDriverWait

    page = driver.find_element(By.TAG_NAME, "html")
    element.send_keys(*keys) if keys else element.click()

    def replaced(d) -> bool:
        try:
            return expected_conditions.staleness_of(page)(d)
        except WebDriverException as exc:  # chromium, mid-navigation: the old node left the document
            if "does not belong to the document" in str(exc):
                return True
            raise

    WebDriverWait(driver, 10).until(replaced)


def cells(driver, table_id):
    from selenium.webdriver.common.by import By

    return [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")]


def test_a_user_browses_the_store(served, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    b = browser
    b.get(served + "/")
    assert b.find_element(By.TAG_NAME, "h1").text == "The store"
    counts = b.find_element(By.ID, "counts").text
    assert counts.startswith("4 artifacts in 2 projects") and "dataset 2" in counts and "model 1" in counts
    recent = cells(b, "recent")
    assert [r[:3] for r in recent] == [["acme/xss/evil", "v0", "dataset"], ["acme/ml/report", "v0", "result"],
                                       ["acme/ml/classifier", "v0", "model"], ["acme/ml/raw", "v1", "dataset"],
                                       ["acme/ml/raw", "v0", "dataset"]]  # the newest first
    shot(b, tmp_path, "home")
    follow(b, b.find_element(By.CSS_SELECTOR, "#entities a[href='/e/acme']"))
    follow(b, b.find_element(By.LINK_TEXT, "ml"))
    rows = {r[0]: r for r in cells(b, "artifacts")}
    assert set(rows) == {"classifier", "raw", "report"} and "model" in rows["classifier"]
    shot(b, tmp_path, "project")

    follow(b, b.find_element(By.LINK_TEXT, "raw"))
    versions = cells(b, "versions")
    assert [r[0] for r in versions] == ["v1", "v0"] and "lilies and trees" in versions[0]
    # every move, newest first: when, alias, where it points, where it pointed before, who
    assert [r[1:4] for r in cells(b, "alias-history")] == [["clean", "v1", "-"], ["latest", "v1", "v0"],
                                                           ["latest", "v0", "-"]]
    shot(b, tmp_path, "artifact")

    follow(b, b.find_element(By.CSS_SELECTOR, "form.diff button"))  # v0 → v1 is preselected
    assert b.find_element(By.TAG_NAME, "h1").text == "raw: v0 → v1"
    assert sorted((r[0], r[1]) for r in cells(b, "diff")) == [
        ("added", "tables/trees.tsv"), ("changed", "tables/flowers.csv"), ("removed", "old.txt")]
    shot(b, tmp_path, "diff")

    follow(b, b.find_element(By.LINK_TEXT, "v1"))
    assert [r[0] for r in cells(b, "entries")] == ["README.txt", "blob.bin", "config.json", "img.png", "tables/"]
    assert cells(b, "entries")[-1][3] == "directory of 2 entries"
    assert b.find_element(By.CSS_SELECTOR, "nav.crumbs").text == "acme / ml / raw:v1"
    meta = {tr.find_element(By.TAG_NAME, "th").text: tr.find_element(By.TAG_NAME, "td").text
            for tr in b.find_elements(By.CSS_SELECTOR, "#metadata tr")}
    assert meta == {"rows": "3", "source": '"field notes"'}
    use = {tr.find_element(By.TAG_NAME, "th").text: tr.find_element(By.TAG_NAME, "code").text
           for tr in b.find_elements(By.CSS_SELECTOR, "#use tr")}
    assert use["download"] == "artifactfs get acme/ml/raw:v1 --root ./raw-v1"
    assert use["pandas, fsspec"] == "artifactfs://acme/ml/raw:v1/"
    button = b.find_element(By.CSS_SELECTOR, "button.copy[data-for='use-3']")
    b.execute_cdp_cmd("Browser.grantPermissions", {"origin": served, "permissions": ["clipboardReadWrite",
                                                                                     "clipboardSanitizedWrite"]})
    button.click()
    from selenium.webdriver.support.wait import WebDriverWait

    WebDriverWait(b, 5).until(lambda d: button.text != "copy")
    if button.text == "copied":  # the clipboard took it: read it back
        pasted = b.execute_async_script("navigator.clipboard.readText().then(arguments[0], () => arguments[0](null))")
        assert pasted == use["download"]
    else:  # no clipboard here: the line is selected for Ctrl+C
        assert button.text == "press Ctrl+C" and b.execute_script("return getSelection().toString()") == use["download"]
    shot(b, tmp_path, "version")
    follow(b, b.find_element(By.LINK_TEXT, "tables/"))
    follow(b, b.find_element(By.LINK_TEXT, "flowers.csv"))
    heads = [th.text for th in b.find_elements(By.CSS_SELECTOR, "#preview-table thead th")]
    assert heads == ["name", "petals", "colour"]
    assert cells(b, "preview-table") == [["rose", "5", "red"], ["tulip", "6", "yellow"], ["lily", "6", "white"]]
    shot(b, tmp_path, "preview")

    b.get(served + "/e/acme/ml/raw/v1/file/img.png")
    img = b.find_element(By.CSS_SELECTOR, "section.preview img")
    assert b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img) == 4

    b.get(served + "/e/acme/ml/classifier/best/lineage")
    nodes = b.find_elements(By.CSS_SELECTOR, "svg.lineage a.node")
    labels = " ".join(n.text for n in nodes)
    for name in ("classifier:v0", "raw:v1", "train-7", "eval-3", "report:v0"):
        assert name in labels, (name, labels)
    focus = b.find_element(By.CSS_SELECTOR, "svg.lineage a.node.focus rect")
    dataset = b.find_element(By.CSS_SELECTOR, "svg.lineage a.node.t-dataset rect")
    assert float(focus.value_of_css_property("stroke-width").rstrip("px")) > 3  # the page's version stands out
    assert focus.value_of_css_property("fill") != dataset.value_of_css_property("fill")  # types differ in colour
    assert "another type" in b.find_element(By.ID, "legend").text
    shot(b, tmp_path, "lineage")
    follow(b, next(n for n in nodes if "report:v0" in n.text))
    assert b.find_element(By.TAG_NAME, "h1").text.startswith("acme/ml/report:v0")

    box = b.find_element(By.CSS_SELECTOR, "form.search input")
    follow(b, box, "model", Keys.ENTER)
    assert "classifier" in b.find_element(By.TAG_NAME, "main").text


def test_hostile_store_texts_stay_text(served, browser):
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    browser.get(served + "/e/acme/xss/evil/best/tree/")
    assert HOSTILE in browser.find_element(By.CSS_SELECTOR, "p.description").text
    names = [r[0] for r in cells(browser, "entries")]
    assert "<b onmouseover=alert(1)> \"q\" 'a'.txt" in names and "..dots/" in names
    assert not browser.find_elements(By.CSS_SELECTOR, "main script, main b")
    with pytest.raises(NoAlertPresentException):
        browser.switch_to.alert.accept()
