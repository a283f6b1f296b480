"""Drive the web page (tools/app.py) in headless Chromium: upload a video, wait for its label,
and save a screenshot of the page (the README's picture; tests/test_app.py drives it the same way).

    python tools/app_screenshot.py --url http://127.0.0.1:7860 --video clip.avi --out app.png

Needs selenium (pip) and Debian's chromium and chromium-driver (apt-get install chromium
chromium-driver): the browser and its driver installed by the system, nothing downloaded.
"""

import argparse
import io
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.atomic import atomic_write
from utils.cli import Parser
from utils.errors import UserError, run_cli

BROWSER = ("chromium", "chromedriver")  # found on PATH, as .ci/run looks for them
VERDICT = "#verdict"  # the page's headline (tools/app.py), empty until a video is scored
ERROR = ".toast-message-text.error"  # Gradio's error messages, one element each
PREVIEW = "Video not playable"  # the browser cannot preview the upload (.avi): it is scored still


def missing() -> str | None:
    """Why no browser can be driven here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: pip install selenium"
    for name in BROWSER:
        if shutil.which(name) is None:
            return f"no {name} on PATH: apt-get install chromium chromium-driver"
    return None


def open_browser(width: int = 1280, height: int = 1400):
    """Headless Chromium at ``width`` x ``height``, through its chromedriver (Debian's)."""
    why = missing()
    if why:
        raise UserError(f"cannot drive a browser: {why}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    chromium, chromedriver = map(shutil.which, BROWSER)
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(chromedriver), options=options)


def upload(driver, url: str, video: Path, timeout: float = 60.0) -> str:
    """Open ``url``, upload ``video`` and wait for its headline; returns the headline's text.
    An error message on the page instead is a UserError with its text."""
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    wait = WebDriverWait(driver, timeout, poll_frequency=0.1)
    try:
        # The page is built by its scripts: upload once they have laid it out (the headline's
        # element is there, empty) and the document has loaded, not as soon as an input exists.
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, VERDICT) and _loaded(d))
        field = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "input[type=file]"))
        field.send_keys(str(Path(video).resolve()))
        wait.until(lambda d: _texts(d, VERDICT) or errors(d))
    except TimeoutException:
        shown = " | ".join(driver.find_element(By.TAG_NAME, "body").text.split("\n")[:12])
        raise UserError(
            f"{url}: no result for {video} in {timeout:g} s; the page shows: {shown}"
        ) from None
    verdict = _texts(driver, VERDICT)
    if not verdict:
        raise UserError(errors(driver)[0])
    return verdict[0]


def _loaded(driver) -> bool:
    return driver.execute_script("return document.readyState") == "complete"


def errors(driver) -> list[str]:
    """The error messages the page shows, but the browser's own note that it cannot preview."""
    return [text for text in _texts(driver, ERROR) if text != PREVIEW]


def _texts(driver, selector: str) -> list[str]:
    from selenium.webdriver.common.by import By

    found = driver.find_elements(By.CSS_SELECTOR, selector)
    return [e.text.strip() for e in found if e.text.strip()]


def screenshot(driver, out: Path) -> Path:
    """The page as a 256-colour PNG (its flat colours lose nothing visible; the file is a third
    the size), written whole: its messages removed and its images loaded first."""
    from PIL import Image

    driver.execute_script("document.querySelectorAll('.toast-wrap').forEach(e => e.remove())")
    deadline = time.monotonic() + 10.0
    script = "return [...document.images].every(i => i.complete)"
    while not driver.execute_script(script) and time.monotonic() < deadline:
        time.sleep(0.1)
    image = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    with atomic_write(out) as file:
        image.quantize(256).save(file, format="PNG", optimize=True)
    return out


def get_args(argv=None) -> argparse.Namespace:
    parser = Parser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--url", default="http://127.0.0.1:7860", help="the page tools/app.py serves"
    )
    parser.add_argument("--video", type=Path, required=True, help="the video to upload")
    parser.add_argument("--out", type=Path, required=True, help="the screenshot (.png)")
    parser.add_argument("--width", type=int, default=1280, help="browser window width, pixels")
    parser.add_argument("--height", type=int, default=1400, help="browser window height")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for a label")
    return parser.parse_args(argv)


def main(argv=None) -> str:
    args = get_args(argv)
    if not args.video.is_file():
        raise UserError(f"video not found: {args.video}; give the path of a video file")
    if args.out.suffix.lower() != ".png":
        raise UserError(f"--out {args.out}: give a .png file")
    driver = open_browser(args.width, args.height)
    try:
        headline = upload(driver, args.url, args.video, args.timeout)
        print(f"{headline}\nwrote {screenshot(driver, args.out)}")
    finally:
        driver.quit()
    return headline


if __name__ == "__main__":
    run_cli(main)
