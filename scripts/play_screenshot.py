"""The screenshot of ``wam play`` in the docs: serve a run's dream, drive it with key presses in headless
Chromium, save the page.

    usage: python scripts/play_screenshot.py --run RUN --task TASK [--keys 6] [--out docs/play.png]
"""

from __future__ import annotations

import argparse
import shutil
import threading
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from wam.eval.play import PlayConfig, make_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--task", required=True)
    parser.add_argument("--keys", type=int, default=6, help="ArrowUp presses before the screenshot")
    parser.add_argument("--out", type=Path, default=Path("docs/play.png"))
    args = parser.parse_args()
    server, session = make_server(PlayConfig(run=args.run, task=args.task, port=0, device="cpu"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=800,720"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    try:
        driver.get(f"http://127.0.0.1:{server.server_address[1]}/")
        wait = WebDriverWait(driver, 120)
        wait.until(lambda d: (d.find_element("id", "dream").get_attribute("src") or "").startswith("data:image"))
        for i in range(1, args.keys + 1):
            driver.find_element("tag name", "body").send_keys(Keys.ARROW_UP)
            wait.until(lambda d, i=i: d.find_element("id", "step").text == str(i))
        args.out.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.out))
        print(f"wrote {args.out}: step {args.keys}, PSNR {driver.find_element('id', 'psnr').text} dB")
    finally:
        driver.quit()
        server.shutdown()
        session.close()


if __name__ == "__main__":
    main()
