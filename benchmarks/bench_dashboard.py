"""How fast the dashboard answers a presenter, in Debian's Chromium (Playwright). Prints a table; asserts nothing.

    .venv/bin/python benchmarks/bench_dashboard.py [--repeat 5]

Starts ``picmetric dashboard`` on an empty store in a temporary folder and measures, each as the median of
``--repeat`` tries: a warm load of every page (navigation to its heading on screen), a sample click until the
annotated photo is on screen (first time: the models run; again: from history), a display-threshold change until
the browser has redrawn the boxes (to none, then down to the detector's floor), a move of the compare wipe, and a
History filter until the table is updated; and the steps that look inside the network: another label's evidence
map, another layer's channels, the next convolution position, the walkthrough's score slider, and the lesson's
next step (target: each under 0.5 s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.services import free_port, wait_for_http  # noqa: E402

CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
]  # fmt: skip
PAGES = {
    "": "Analyze a photo", "history": "History", "how-it-works": "How PicMetric sees a photo", "system": "System",
    "lesson": "Lesson: how a computer sees a photo",
}  # fmt: skip


def ms(action: Callable[[], None], until: Callable[[], None]) -> float:
    started = time.perf_counter()
    action()
    until()
    return (time.perf_counter() - started) * 1000


# the src of the visible image whose caption contains a text ("" = the last visible image)
_SOURCE = """([caption]) => {
  const shown = [...document.querySelectorAll('[data-testid=stMain] [data-testid=stImage]')]
    .filter(e => e.offsetParent !== null && e.innerText.includes(caption));
  const img = shown.length ? shown[shown.length - 1].querySelector('img') : null;
  return img ? img.getAttribute('src') : null;
}"""


def image_source(page: Page, caption: str) -> str | None:
    return page.evaluate(_SOURCE, [caption])


# how many boxes the annotated photo (drawn by the browser) shows now
_BOXES = """() => document.querySelectorAll('.st-key-analyze-objects-image .scatterlayer .trace').length"""


def until_boxes(page: Page, test: str) -> Callable[[], None]:
    """Wait until the number of drawn boxes ``n`` passes ``test`` (a JavaScript expression of n)."""

    def wait() -> None:
        page.wait_for_function(f"() => {{ const n = ({_BOXES})(); return {test}; }}", timeout=60_000)

    return wait


def until_replaced(page: Page, caption: str, before: str | None) -> Callable[[], None]:
    def wait() -> None:
        page.wait_for_function(
            f"([caption, before]) => {{ const src = ({_SOURCE})([caption]); return src && src !== before; }}",
            arg=[caption, before],
            timeout=60_000,
        )

    return wait


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loads-only", action="store_true", help="only the warm page loads")
    args = parser.parse_args()
    rows: list[tuple[str, list[float]]] = []
    with tempfile.TemporaryDirectory() as data:
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "picmetric", "dashboard", "--port", str(port), "--host", "127.0.0.1"],
            cwd=ROOT, env={**os.environ, "PICMETRIC_DATA_DIR": data}, stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            assert wait_for_http(f"{url}/_stcore/health"), "the dashboard did not start"
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 720})
                for path, heading in PAGES.items():  # first visits: models load, caches fill
                    page.goto(f"{url}/{path}")
                    page.get_by_role("heading", name=heading).first.wait_for(timeout=120_000)
                for path, heading in PAGES.items():
                    times = [
                        ms(lambda p=path: page.goto(f"{url}/{p}"),
                           lambda h=heading: page.get_by_role("heading", name=h).first.wait_for(timeout=60_000))
                        for _ in range(args.repeat)
                    ]  # fmt: skip
                    rows.append((f"warm load /{path}", times))
                if args.loads_only:
                    browser.close()
                    print_table(rows)
                    return

                def open_samples() -> None:
                    page.goto(url)
                    page.get_by_role("heading", name="Analyze a photo").wait_for()
                    page.get_by_role("tab", name="Samples").click()

                def click_sample() -> None:  # the tile itself is the button
                    tile = page.locator(".st-key-sample-tile-bus img").bounding_box()
                    assert tile is not None
                    page.mouse.click(tile["x"] + tile["width"] / 2, tile["y"] + tile["height"] / 2)

                main_area = page.get_by_test_id("stMain")

                def shown(text: str) -> Callable[[], None]:
                    return lambda: main_area.get_by_text(text).first.wait_for(timeout=60_000)

                annotated = main_area.locator(".st-key-analyze-objects-image .scatterlayer .trace").first
                open_samples()
                rows.append(("sample click → annotated photo (models run)", [ms(click_sample, annotated.wait_for)]))
                again = []
                for _ in range(args.repeat):
                    open_samples()  # a fresh page: the click, not the navigation, is timed
                    again.append(ms(click_sample, annotated.wait_for))
                rows.append(("sample click → annotated photo (from history)", again))

                slider = (
                    page.get_by_test_id("stSidebar")
                    .get_by_test_id("stSlider")
                    .filter(has_text="Object confidence")
                    .get_by_role("slider")
                )
                changes = []
                for key, test in [("End", "n === 0"), ("Home", "n > 5")] * ((args.repeat + 1) // 2):
                    changes.append(ms(lambda k=key: (slider.focus(), slider.press(k)), until_boxes(page, test)))
                rows.append(("object threshold change → boxes redrawn", changes))

                views = main_area.get_by_test_id("stButtonGroup")
                if views.count():  # the view selector
                    views.get_by_text("Compare", exact=True).click()
                else:  # older releases: tabs
                    main_area.get_by_role("tab", name="Compare").click()
                wipe = main_area.get_by_role("slider").first
                wipe.wait_for()
                page.wait_for_timeout(1000)  # the view settled: a key pressed during its first draw can be lost
                moves = []
                for key in ["End", "Home"] * ((args.repeat + 1) // 2):
                    before = image_source(page, "")
                    moves.append(ms(lambda k=key: (wipe.focus(), wipe.press(k)), until_replaced(page, "", before)))
                rows.append(("compare wipe move → image replaced", moves))

                views.get_by_text("Labels", exact=True).click()
                main_area.get_by_text("Where the evidence for").first.wait_for(timeout=60_000)
                page.wait_for_timeout(1000)
                evidence = page.locator(".st-key-analyze-evidence button")
                switches = []
                for n in [1, 0] * ((args.repeat + 1) // 2):
                    before = image_source(page, "")
                    switches.append(ms(lambda n=n: evidence.nth(n).click(), until_replaced(page, "", before)))
                rows.append(("Labels: evidence for another label → map replaced", switches))

                page.goto(f"{url}/how-it-works")
                main_area.get_by_text("Inside the classifier").first.wait_for(timeout=120_000)
                layer = page.locator(".st-key-walk-layer button")
                layers = []
                for n, text in [(1, "288 channels"), (0, "32 channels")] * ((args.repeat + 1) // 2):
                    layers.append(ms(lambda n=n: layer.nth(n).click(), shown(text)))
                rows.append(("How it works: another layer → channels redrawn", layers))
                steps = []
                for position in range(61, 61 + args.repeat):  # the column starts at 60; each click moves it one on
                    thumb = main_area.get_by_test_id("stSliderThumbValue").get_by_text(str(position), exact=True)
                    steps.append(ms(lambda: main_area.get_by_role("button", name="Next position").click(),
                                    lambda t=thumb: t.wait_for(timeout=60_000)))  # fmt: skip
                rows.append(("How it works: convolution next position", steps))
                score = main_area.get_by_role("slider", name="Score threshold")
                scores = []
                for key, text in [("End", "Candidates ≥ 95%"), ("Home", "Candidates ≥ 5%")] * ((args.repeat + 1) // 2):
                    scores.append(ms(lambda k=key: (score.focus(), score.press(k)), shown(text)))
                rows.append(("How it works: score slider → objects redrawn", scores))

                page.goto(f"{url}/lesson")
                main_area.get_by_text("Step 1 of 8").wait_for(timeout=120_000)
                lesson = []
                for button, text in [("Next", "Step 2 of 8"), ("Back", "Step 1 of 8")] * ((args.repeat + 1) // 2):
                    lesson.append(ms(lambda b=button: main_area.get_by_role("button", name=b).click(), shown(text)))
                rows.append(("Lesson: next / back step", lesson))

                page.goto(f"{url}/history")
                page.get_by_text("1 analysis (page 1 of 1)").wait_for(timeout=60_000)
                box = page.get_by_label("Label or object class")
                filters = []
                for text, expected in [("dog", "No analysis matches"), ("", "1 analysis")] * (
                    (args.repeat + 1) // 2
                ):  # fmt: skip
                    filters.append(
                        ms(lambda t=text: (box.fill(t), box.press("Enter")),
                           lambda e=expected: page.get_by_text(e).first.wait_for(timeout=60_000))
                    )  # fmt: skip
                rows.append(("History filter → table updated", filters))
                browser.close()
        finally:
            server.kill()
            server.wait(10)
    print_table(rows)


def print_table(rows: list[tuple[str, list[float]]]) -> None:
    print(f"\nDashboard in Chromium, 1280×720, {os.cpu_count()} cores; median (min–max) of the tries, in ms")
    print(f"| {'step':48s} | median | min–max      | tries |")
    print(f"|{'-' * 50}|--------|--------------|-------|")
    for name, times in rows:
        print(
            f"| {name:48s} | {statistics.median(times):6.0f} | {min(times):5.0f}–{max(times):<6.0f} | {len(times):5d} |"
        )


if __name__ == "__main__":
    main()
