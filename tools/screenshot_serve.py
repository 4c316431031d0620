"""The README picture of the ``s2s serve`` page: serve a translator and a captioner, use the page
in headless Chromium as a user would, and save a screenshot.

    python tools/screenshot_serve.py --ckpt runs/multi30k_en_de_attn/checkpoints/best.ckpt \\
        --ckpt runs/shapes_caption_demo/checkpoints/best.ckpt \\
        --text "A man rides a bike down the street." --image data/shapes/test/00000.png \\
        --word 2 --out docs/serve.png

Needs Chromium and its driver (Debian: ``apt-get install chromium chromium-driver``) and Selenium.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).parent))
from bench_serve import ServerProcess


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--ckpt", action="append", required=True, help="checkpoints to serve")
    p.add_argument("--text", action="append", default=[], help="a sentence to translate")
    p.add_argument("--image", type=Path, help="an image to caption")
    p.add_argument("--word", type=int, default=0, help="the caption word whose attention shows")
    p.add_argument("--out", type=Path, default=Path("docs/serve.png"))
    return p.parse_args(argv)


def answered(browser: webdriver.Chrome, element_id: str) -> str:
    """The element's text once the page has written an answer."""
    wait = WebDriverWait(browser, 60)
    return wait.until(lambda b: (t := b.find_element(By.ID, element_id).text) and t != "…" and t)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "chromium"
    for flag in ("--headless=new", "--no-sandbox", "--window-size=900,1150"):
        options.add_argument(flag)
    with tempfile.TemporaryDirectory() as tmp:
        ckpts = [a for ckpt in args.ckpt for a in ("--ckpt", ckpt)]
        server = ServerProcess(*ckpts, log=Path(tmp) / "serve.log")
        browser = webdriver.Chrome(options=options)
        try:
            browser.get(server.url + "/")
            if args.text:
                browser.find_element(By.ID, "text").send_keys("\n".join(args.text))
                browser.find_element(By.ID, "translate-button").click()
                print(answered(browser, "translations"))
            if args.image:
                browser.find_element(By.ID, "image-input").send_keys(str(args.image.resolve()))
                print(answered(browser, "caption"))
                browser.find_elements(By.CSS_SELECTOR, "#words span")[args.word].click()
            args.out.parent.mkdir(parents=True, exist_ok=True)
            browser.save_screenshot(str(args.out))
            print(f"wrote {args.out}")
        finally:
            browser.quit()
            server.stop()


if __name__ == "__main__":
    main()
