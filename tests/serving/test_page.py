"""The page at ``/`` in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``,
driven by Selenium): translating, captioning with the attention overlay, and sampling work as a
user would use them."""

from __future__ import annotations

import shutil

import pytest
from tiny import CAPTIONS

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and DRIVER),
    reason="needs Chromium and its driver (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=900,1400",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def text_of(browser, element_id: str, timeout: float = 30) -> str:
    """The element's text once the page has written an answer (not the "…" placeholder)."""
    wait = WebDriverWait(browser, timeout)
    return wait.until(lambda b: (t := b.find_element(By.ID, element_id).text) and t != "…" and t)


def test_translate_caption_and_sample_in_the_browser(browser, server, caption_run, tmp_path):
    browser.get(server.url + "/")
    sentences = ["a b c d", "e f g"]
    expected = server.post("/translate", {"text": sentences})[1]["translations"]
    browser.find_element(By.ID, "text").send_keys("\n".join(sentences))
    browser.find_element(By.ID, "translate-button").click()
    assert text_of(browser, "translations").splitlines() == [n[0]["text"] for n in expected]

    images, _ = caption_run
    browser.find_element(By.ID, "image-input").send_keys(str(images / "rg.png"))
    assert text_of(browser, "caption") == CAPTIONS["rg.png"]
    words = browser.find_elements(By.CSS_SELECTOR, "#words span")
    assert len(words) == len(CAPTIONS["rg.png"].split()) + 1  # and EOS
    assert browser.execute_script("return document.getElementById('overlay').width") == 320

    browser.find_element(By.ID, "prompt").send_keys("the")
    browser.find_element(By.ID, "sample-button").click()
    assert text_of(browser, "samples").startswith("the")
    assert browser.save_screenshot(str(tmp_path / "page.png"))


def test_errors_show_on_the_page(browser, server):
    browser.get(server.url + "/")
    browser.find_element(By.ID, "text").send_keys("a\n" * 9)  # the server allows 8 sentences
    browser.find_element(By.ID, "translate-button").click()
    assert text_of(browser, "translations") == '"text" has 9 sentences; at most 8'
    assert "error" in browser.find_element(By.ID, "translations").get_attribute("class")
