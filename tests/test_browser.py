"""End to end in a real browser: `streamlit run app.py`, Debian's Chromium driven by Playwright.

Screenshots of every page land in test-output/screenshots/ for a person to look at."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from playwright.sync_api import expect, sync_playwright

from .services import free_port, wait_for_http

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "test-output" / "screenshots"
#: what an Android phone's Chrome sends (the dashboard folds History's filters for a "Mobile" browser)
PHONE_USER_AGENT = (
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36"
)
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
]  # fmt: skip


@contextlib.contextmanager
def running_dashboard(data: Path, *where: str):
    """``picmetric dashboard`` (what ``./bootstrap.sh run`` starts) on a free port; its URL. ``where``: other
    flags than listening on 127.0.0.1 (``--lan ADDRESS``)."""
    port = free_port()
    log = open(data / "streamlit.log", "w")  # noqa: SIM115 (open while the dashboard runs)
    process = subprocess.Popen(
        [sys.executable, "-m", "picmetric", "dashboard", "--port", str(port), *(where or ("--host", "127.0.0.1"))],
        cwd=ROOT, env={**os.environ, "PICMETRIC_DATA_DIR": str(data)}, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for_http(f"{url}/_stcore/health"):
            pytest.fail(f"streamlit did not start: {(data / 'streamlit.log').read_text()[-2000:]}")
        yield url
    finally:
        process.kill()
        process.wait(10)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory):
    with running_dashboard(tmp_path_factory.mktemp("dashboard-data")) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is required (./bootstrap.sh test installs it)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def _shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    time.sleep(1.0)  # let charts finish their entry animation
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_upload_results_history_and_every_page(dashboard, browser, zidane_path):
    page = browser.new_page(viewport={"width": 1440, "height": 2200})
    page.goto(dashboard)
    expect(page.get_by_text("Analyze a photo")).to_be_visible(timeout=90_000)
    icon = page.locator("link[rel*=icon]").first.get_attribute("href") or ""
    assert "gstatic" not in icon and "googleapis" not in icon, icon  # shipped, works offline
    assert page.request.get(icon if icon.startswith("http") else f"{dashboard}/{icon.lstrip('./')}").ok, icon
    _shot(page, "1-analyze-empty")
    page.get_by_role("tab", name="Samples").click()
    tiles = page.get_by_test_id("stMain").locator("[data-testid=stImage] img:visible")
    expect(tiles.first).to_be_visible(timeout=30_000)
    sizes = {
        (round(b["width"]), round(b["height"])) for b in (tiles.nth(i).bounding_box() for i in range(tiles.count()))
    }
    assert len(sizes) == 1 and tiles.count() >= 4, sizes  # equal square tiles
    _shot(page, "1b-samples")
    page.get_by_role("tab", name="Upload").click()

    page.locator("input[type=file]").set_input_files(str(zidane_path))
    main = page.get_by_test_id("stMain")
    expect(main.get_by_test_id("stMetricValue").first).to_be_visible(timeout=90_000)
    metrics = main.get_by_test_id("stMetric")
    expect(metrics.filter(has_text="Faces")).to_contain_text("2")
    expect(metrics.filter(has_text="Objects")).to_contain_text("4")
    original = main.locator(".st-key-photo-analyze-objects-original img")
    annotated = main.locator(".st-key-analyze-objects-image .imagelayer image").first  # the photo under the boxes
    expect(annotated).to_be_visible(timeout=30_000)
    boxes = [original.bounding_box(), annotated.bounding_box()]
    assert boxes[0]["width"] > 300 and abs(boxes[0]["y"] - boxes[1]["y"]) < 5  # side by side, not tiny
    assert abs(boxes[0]["height"] - boxes[1]["height"]) <= 1 and abs(boxes[0]["width"] - boxes[1]["width"]) <= 1
    _shot(page, "2-analyze-objects")

    # hovering a box (drawn by the browser) names it and its confidence
    plot = main.locator(".st-key-analyze-objects-image .nsewdrag").first.bounding_box()  # the photo's area
    page.mouse.move(plot["x"] + plot["width"] * 1080 / 1280, plot["y"] + plot["height"] * 120 / 720)  # Ancelotti
    expect(main.locator(".st-key-analyze-objects-image .hoverlayer")).to_contain_text("person 9", timeout=10_000)

    # a display threshold re-filters the stored result: the drawn boxes change, the models do not run
    caption = main.get_by_text("YOLOv4-tiny ·")
    expect(caption).to_contain_text("4 objects")
    threshold = page.get_by_test_id("stSidebar").get_by_test_id("stSlider").filter(has_text="Object confidence")
    threshold.get_by_role("slider").focus()
    threshold.get_by_role("slider").press("End")
    expect(caption).to_contain_text("0 objects", timeout=30_000)
    threshold.get_by_role("slider").press("Home")  # the detector's floor: its weaker guesses, dashed
    expect(caption).to_contain_text("dashed: below the 25% threshold", timeout=30_000)
    _shot(page, "2b-analyze-objects-down-to-the-floor")
    for _ in range(20):  # back up to 0.25, the threshold the models ran with
        threshold.get_by_role("slider").press("ArrowRight")
    expect(caption).to_contain_text("4 objects", timeout=30_000)

    views = main.get_by_test_id("stButtonGroup")
    views.get_by_text("Faces", exact=True).click()
    expect(main.get_by_text("2 faces with landmarks")).to_be_visible()
    _shot(page, "3-analyze-faces")
    views.get_by_text("Labels", exact=True).click()
    expect(main.get_by_text("spreads its probability")).to_be_visible()
    _shot(page, "4-analyze-labels")

    page.get_by_role("link", name="History").click()
    expect(page.get_by_text("1 analysis (page 1 of 1)")).to_be_visible(timeout=30_000)
    grid = page.get_by_test_id("stDataFrame")
    expect(grid).to_be_visible()
    expect(grid.get_by_text("zidane.jpg")).to_be_attached()
    _shot(page, "5-history")
    box = grid.bounding_box()
    page.mouse.click(box["x"] + 200, box["y"] + 36 + 32)  # a cell of the first row (header 36 px, rows 64 px)
    expect(main.get_by_test_id("stMetric").filter(has_text="Faces")).to_contain_text("2", timeout=60_000)
    expect(page).to_have_url(f"{dashboard}/history?sha={hashlib.sha256(zidane_path.read_bytes()).hexdigest()}")
    _shot(page, "5a-history-row-clicked")

    sha = hashlib.sha256(zidane_path.read_bytes()).hexdigest()  # a batch summary links to results like this
    page.goto(f"{dashboard}/history?sha={sha}")
    expect(main.get_by_test_id("stMetric").filter(has_text="Faces")).to_contain_text("2", timeout=60_000)
    expect(main.get_by_role("button", name="Delete")).to_be_visible()
    _shot(page, "5b-history-open")

    page.get_by_role("link", name="How it works").click()
    expect(page.get_by_text("How PicMetric sees a photo")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("After NMS").first).to_be_visible(timeout=60_000)
    _shot(page, "6-how-it-works")
    page.get_by_role("button", name="Run every model").click()
    expect(page.get_by_text("MobileNetV2, float32").first).to_be_visible(timeout=60_000)
    page.get_by_role("heading", name="5 · Compare the models on this photo").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "6b-compare-models.png"))

    page.get_by_role("link", name="System").click()
    expect(page.get_by_text("Recent log")).to_be_visible(timeout=30_000)
    expect(page.get_by_text("analysed in")).to_be_visible()
    _shot(page, "7-system")


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("system", "Recent log"),
        ("history", "History"),
        ("how-it-works", "How PicMetric sees a photo"),
        ("lesson", "Lesson: how a computer sees a photo"),
    ],
)
def test_a_bookmarked_page_is_the_first_request_after_a_start(browser, tmp_path, path, heading):
    """A fresh server whose first visitor opens a page's own URL gets that page in the normal app, not
    Streamlit's automatic page list ("app, analyze, ...") or "Page not found"."""
    with running_dashboard(tmp_path) as url:
        page = browser.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{url}/{path}")
        expect(page.get_by_role("heading", name=heading).first).to_be_visible(timeout=90_000)
        navigation = page.get_by_test_id("stSidebarNav")
        expect(navigation).to_be_visible()
        links = [text.strip().splitlines()[-1] for text in navigation.get_by_role("link").all_inner_texts()]
        pages = [
            "Analyze",
            "History",
            "Video",
            "Evaluate",
            "How it works",
            "Live camera",
            "Lesson",
            "Class board",
            "Join a board",
            "System",
        ]
        assert links == pages, links
        expect(page.get_by_text("Page not found")).to_have_count(0)
        _shot(page, f"0-cold-start-{path}")
        page.close()


def test_dark_theme_follows_the_browser_and_a_phone_needs_no_sideways_scrolling(dashboard, browser, zidane_path):
    dark = browser.new_page(viewport={"width": 1280, "height": 720}, color_scheme="dark")
    dark.goto(dashboard)
    expect(dark.get_by_text("Analyze a photo")).to_be_visible(timeout=90_000)
    dark.locator("input[type=file]").set_input_files(str(zidane_path))
    main = dark.get_by_test_id("stMain")
    expect(main.get_by_test_id("stMetric").filter(has_text="Faces")).to_contain_text("2", timeout=90_000)
    # at 1280x720 the result starts below the inputs: the page scrolls to it
    expect(main.locator(".st-key-analyze-objects-image")).to_be_in_viewport(ratio=0.9, timeout=10_000)
    background = dark.get_by_test_id("stApp").evaluate("e => getComputedStyle(e).backgroundColor")
    text = main.get_by_test_id("stMetricValue").first.evaluate("e => getComputedStyle(e).color")
    assert background == "rgb(11, 18, 32)", background  # the dark theme, chosen by the browser's preference
    assert text.startswith("rgb(2") or text.startswith("rgb(1"), text  # light text on it
    _shot(dark, "8-dark-analyze")
    dark.close()

    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                             user_agent=PHONE_USER_AGENT)  # fmt: skip
    for path, heading in (("", "Analyze a photo"), ("history", "History"), ("system", "System")):
        phone.goto(f"{dashboard}/{path}")
        expect(phone.get_by_role("heading", name=heading).first).to_be_visible(timeout=60_000)
        time.sleep(1.0)
        overflow = phone.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"/{path} scrolls sideways by {overflow} px"
        if path == "history":  # the results first: the filters folded, the table on the first screen
            expect(phone.get_by_label("Label or object class")).to_be_hidden()
        _shot(phone, f"9-phone-{path or 'analyze'}")
    phone.goto(dashboard)
    phone.get_by_role("tab", name="Samples").click()
    tiles = [phone.locator(f".st-key-sample-tile-{key}") for key in ("zidane", "bus", "imagenet_00_243")]
    expect(tiles[0].locator("img")).to_be_visible(timeout=30_000)
    places = [tile.bounding_box() for tile in tiles]
    assert all(p["width"] < 140 for p in places) and len({round(p["y"]) for p in places}) == 1, places  # 3 a row
    _shot(phone, "9b-phone-samples")
    photo = tiles[1].locator("img").bounding_box()
    phone.touchscreen.tap(photo["x"] + photo["width"] / 2, photo["y"] + photo["height"] / 2)  # the tile is the button
    main = phone.get_by_test_id("stMain")
    expect(main.get_by_text("YOLOv4-tiny ·")).to_be_visible(timeout=90_000)
    chart = main.locator(".st-key-analyze-objects-chart")
    chart.scroll_into_view_if_needed()
    chart.tap()
    assert chart.locator(".modebar").count() == 0  # no plotly toolbar over the chart's title
    _shot(phone, "9c-phone-result")
    phone.close()


@pytest.mark.parametrize("viewport", [(1280, 720), (1920, 1080)])
def test_presentation_mode_enlarges_type_charts_and_stage_images(dashboard, browser, viewport):
    width, height = viewport
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{dashboard}/how-it-works")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("After NMS").first).to_be_visible(timeout=90_000)
    text = main.get_by_test_id("stMarkdownContainer").locator("p").first
    text_before = text.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
    logits = main.locator(".st-key-logits .main-svg").first
    chart_before = logits.bounding_box()["height"]
    page.get_by_test_id("stSidebar").get_by_text("Presentation mode").click()
    stages = main.locator(".st-key-walk-mtcnn-stage")
    expect(stages).to_be_visible(timeout=60_000)  # P-Net, R-Net, O-Net one at a time
    assert text.evaluate("e => parseFloat(getComputedStyle(e).fontSize)") > 1.25 * text_before
    expect(logits).to_have_attribute("height", str(round(440 * 1.4)), timeout=30_000)
    assert logits.bounding_box()["height"] > 1.3 * chart_before
    stages.get_by_text("R-Net", exact=True).click()
    stage = main.get_by_test_id("stImage").filter(has_text="after R-Net")
    expect(stage).to_be_visible(timeout=30_000)
    stage.scroll_into_view_if_needed()
    assert stage.bounding_box()["width"] > 0.6 * (width - 400)  # most of the page, not a third of it
    _shot(page, f"10-presentation-{width}x{height}")
    page.close()


@pytest.mark.parametrize("viewport", [(1280, 720), (1920, 1080)])
def test_the_lesson_lets_a_student_draw_a_box_and_see_its_iou(dashboard, browser, viewport):
    """The lesson's own-box step in a real browser: a drag on the photo is a box, answered with its IoU."""
    width, height = viewport
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(f"{dashboard}/lesson")
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("Step 1 of 8")).to_be_visible(timeout=90_000)
    expect(main.locator(".term").first).to_have_attribute("title", re.compile(".+"))  # words explain on hover
    _shot(page, f"11-lesson-start-{width}x{height}")
    for step in range(2, 7):  # on to "your box"
        main.get_by_role("button", name="Next").click()
        expect(main.get_by_text(f"Step {step} of 8")).to_be_visible(timeout=60_000)
    plot = main.locator(".st-key-lesson-draw .draglayer .nsewdrag").first
    expect(plot).to_be_visible(timeout=60_000)
    area = plot.bounding_box()
    page.mouse.move(area["x"] + area["width"] * 0.3, area["y"] + area["height"] * 0.15)
    page.mouse.down()
    page.mouse.move(area["x"] + area["width"] * 0.75, area["y"] + area["height"] * 0.95, steps=12)
    page.mouse.up()
    expect(main.get_by_text("Your box overlaps")).to_be_visible(timeout=60_000)
    _shot(page, f"11-lesson-your-box-{width}x{height}")
    page.close()


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 720}, {"width": 1920, "height": 1080}])
def test_presenting_a_result_fills_the_first_screen_with_large_numbers(dashboard, browser, viewport):
    """On a projector, at both sizes: the metric values grow (not shrink under the labels), the sidebar folds
    away, the result comes before the inputs, and the photo with its boxes is on the first screen, as large as
    the screen's height allows."""
    width, height = viewport["width"], viewport["height"]
    page = browser.new_page(viewport=viewport)
    page.goto(dashboard)
    page.get_by_role("tab", name="Samples").click()
    tile = page.locator(".st-key-sample-tile-zidane img")
    expect(tile).to_be_visible(timeout=60_000)
    place = tile.bounding_box()
    page.mouse.click(place["x"] + place["width"] / 2, place["y"] + place["height"] / 2)  # the tile is the button
    main = page.get_by_test_id("stMain")
    expect(main.get_by_text("YOLOv4-tiny ·")).to_be_visible(timeout=90_000)
    page.get_by_test_id("stSidebar").get_by_text("Presentation mode").click()
    value = main.get_by_test_id("stMetricValue").first
    expect(value).to_have_css("font-size", "48px", timeout=30_000)
    label = main.get_by_test_id("stMetricLabel").first.locator("p").first
    expect(label).to_have_css("font-size", "21.6px", timeout=30_000)  # the labels stay smaller than the numbers
    expect(page.get_by_test_id("stSidebar")).to_have_attribute("data-collapsed", "true", timeout=30_000)
    expect(main.get_by_text("Analyze another photo")).to_be_visible(timeout=30_000)  # the inputs, folded below
    photo = main.locator(".st-key-analyze-objects-image .main-svg").first
    expect(photo).to_be_visible(timeout=30_000)
    deadline = time.monotonic() + 20
    while True:  # the first screen; a busy machine may run the page's scroll to its result after a first wheel
        page.mouse.move(width / 2, height / 2)
        page.mouse.wheel(0, -10_000)
        time.sleep(1.0)
        box = photo.bounding_box()
        if box["y"] >= 0 or time.monotonic() > deadline:
            break
    assert box["y"] >= 0 and box["y"] + box["height"] <= height, box  # whole, without scrolling
    assert box["height"] >= height * 0.45 and box["width"] <= width, box  # as large as the height allows
    numbers = value.bounding_box()
    assert numbers["y"] >= 0 and numbers["y"] + numbers["height"] <= height, numbers
    _shot(page, f"10b-presentation-analyze-{width}x{height}")
    page.close()


def test_the_objects_walkthrough_fits_one_720px_screen_with_its_sliders(dashboard, browser):
    """How it works at 1280x720, not presenting: the score slider and both NMS stage images on one screen."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(f"{dashboard}/how-it-works")
    main = page.get_by_test_id("stMain")
    slider = main.get_by_test_id("stSlider").filter(has_text="Score threshold")
    expect(slider).to_be_visible(timeout=90_000)
    slider.scroll_into_view_if_needed()
    top = slider.bounding_box()["y"]
    images = main.locator(".st-key-walk-objects-stage-row img")
    expect(images.first).to_be_visible(timeout=60_000)
    bottom = max(box["y"] + box["height"] for box in (images.nth(i).bounding_box() for i in range(images.count())))
    assert bottom - top <= 720, (top, bottom)
    page.close()


@pytest.mark.timed
def test_a_phone_photo_is_on_the_projected_board_within_seconds(dashboard, browser, zidane_path, bus_path):
    """Two browser contexts: the teacher's board at 1280x720 and a phone at 390x844 that opens the QR code's address,
    in two tabs: the second tab is the same phone to the board's limits (its signed cookie)."""
    teacher = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
    # the dashboard's first real photo pays for the models' first full-size run: not the board's to measure
    teacher.goto(dashboard)
    teacher.get_by_role("tab", name="Samples").click()
    tile = teacher.locator(".st-key-sample-tile-bus img")
    expect(tile).to_be_visible(timeout=60_000)
    place = tile.bounding_box()
    teacher.mouse.click(place["x"] + place["width"] / 2, place["y"] + place["height"] / 2)
    expect(teacher.get_by_test_id("stMain").get_by_text("YOLOv4-tiny ·")).to_be_visible(timeout=90_000)
    teacher.goto(f"{dashboard}/board")
    main = teacher.get_by_test_id("stMain")
    main.get_by_label("Lesson title").fill("Seeing machines")
    main.get_by_role("button", name="Start a class board").click()
    expect(main.get_by_text("Waiting for the first photo")).to_be_visible(timeout=60_000)
    join_url = main.get_by_test_id("stCode").inner_text().strip()
    assert "/join?board=" in join_url
    _shot(teacher, "12-board-empty-1280x720")
    device = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                 user_agent=PHONE_USER_AGENT)  # fmt: skip
    phone = device.new_page()
    phone.goto(join_url)
    expect(phone.get_by_role("heading", name="Seeing machines")).to_be_visible(timeout=60_000)
    for _ in range(100):  # the page keeps this phone's signed device key in a cookie
        if any(c["name"] == "picmetric_device" for c in device.cookies()):
            break
        time.sleep(0.1)
    second_tab = device.new_page()  # a student who opens the link again, to get around the pause
    second_tab.goto(join_url)
    expect(second_tab.get_by_role("heading", name="Seeing machines")).to_be_visible(timeout=60_000)
    second_tab.locator("input[type=file]").set_input_files(str(bus_path))
    expect(second_tab.get_by_text("bus.jpg")).to_be_visible(timeout=30_000)
    phone.locator("input[type=file]").set_input_files(str(zidane_path))
    expect(phone.get_by_text("zidane.jpg")).to_be_visible(timeout=30_000)
    started = time.monotonic()
    phone.get_by_role("button", name="Send to the board").click()
    expect(main.get_by_text("1 photo from the class")).to_be_visible(timeout=30_000)
    took = time.monotonic() - started
    print(f"BOARD a phone's photo on the projector after {took:.1f} s")  # 1-3 s here (the board polls every second)
    assert took < 10.0, took  # within seconds; its speed is measured, not bounded, here (the brief: no timed goals)
    expect(phone.get_by_text("On the board!")).to_be_visible(timeout=30_000)
    second_tab.get_by_role("button", name="Send to the board").click()
    expect(second_tab.get_by_text("one photo every 5 seconds")).to_be_visible(timeout=30_000)  # the same phone
    second_tab.reload()  # and its photos are its own in every tab, after a reload too
    expect(second_tab.get_by_text("Your photos: did the models get it right?")).to_be_visible(timeout=60_000)
    second_tab.close()
    _shot(phone, "12-board-phone-390x844")
    expect(main.get_by_test_id("stImage").nth(1)).to_be_visible(timeout=30_000)
    _shot(teacher, "12-board-with-a-photo-1280x720")
    teacher.close()
    phone.close()


def _camera_clip(path: Path, photos: list[Path], seconds: int = 4, fps: int = 15) -> Path:
    """A Y4M clip (what Chromium's fake camera plays) made of shipped photos, each fitted into 640x480."""
    frames = []
    for photo in photos:
        picture = cv2.imread(str(photo))
        scale = min(640 / picture.shape[1], 480 / picture.shape[0])
        small = cv2.resize(picture, (round(picture.shape[1] * scale), round(picture.shape[0] * scale)))
        canvas = np.zeros((480, 640, 3), np.uint8)
        top, left = (480 - small.shape[0]) // 2, (640 - small.shape[1]) // 2
        canvas[top : top + small.shape[0], left : left + small.shape[1]] = small
        frames.append(cv2.cvtColor(canvas, cv2.COLOR_BGR2YUV_I420).tobytes())
    with path.open("wb") as clip:
        clip.write(f"YUV4MPEG2 W640 H480 F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for n in range(seconds * fps):
            clip.write(b"FRAME\n" + frames[(n // (fps * 2)) % len(frames)])
    return path


@pytest.mark.timed
def test_the_live_page_draws_what_a_fake_camera_sees(dashboard, browser, tmp_path, zidane_path, bus_path):
    """Chromium's fake camera plays zidane.jpg and bus.jpg: the page lists a person and shows a frame rate."""
    clip = _camera_clip(tmp_path / "camera.y4m", [zidane_path, bus_path])
    camera_args = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                   f"--use-file-for-fake-video-capture={clip}"]  # fmt: skip
    # another Chromium of the test process' one Playwright: this one with the fake camera
    chromium = browser.browser_type.launch(executable_path=shutil.which("chromium"), args=CHROMIUM_ARGS + camera_args)
    try:
        page = chromium.new_page(viewport={"width": 1280, "height": 720})
        page.goto(f"{dashboard}/live")
        main = page.get_by_test_id("stMain")
        start = main.frame_locator("iframe").first.get_by_role("button", name="Start")
        expect(start).to_be_visible(timeout=90_000)
        start.click()
        expect(main.get_by_text(re.compile(r"[1-9]\d*\.\d fps"))).to_be_visible(timeout=90_000)
        expect(main.get_by_test_id("stDataFrame").first).to_contain_text("person", timeout=60_000)
        fps = float(re.search(r"([\d.]+) fps", main.get_by_text(re.compile("fps")).first.inner_text()).group(1))
        assert fps >= 1.0, fps
        _shot(page, "13-live-1280x720")
        threshold = page.get_by_test_id("stSidebar").get_by_test_id("stSlider").filter(has_text="Object confidence")
        threshold.get_by_role("slider").focus()
        threshold.get_by_role("slider").press("End")  # 95 %: the next frames keep only what is that sure
        unsure = re.compile(r"\b([1-8]\d|9[0-4])%")  # any confidence under 95 %
        expect(main.get_by_test_id("stDataFrame").first).not_to_contain_text(unsure, timeout=30_000)
        main.get_by_role("button", name="Capture").click()
        expect(main.get_by_text("Stored:")).to_be_visible(timeout=60_000)
    finally:
        chromium.close()


def test_with_lan_phones_get_the_network_address_whatever_the_teacher_typed(browser, tmp_path, zidane_path):
    """``--lan ADDRESS``: the dashboard listens on the network and says where; the teacher opens the board by
    localhost, yet its link and QR code name the network address, whole on screen, and a phone that opens it sends
    a photo. (The network here is a second loopback address: no packet leaves this machine.)"""
    with running_dashboard(tmp_path, "--lan", "127.0.0.2") as url:
        port = url.rsplit(":", 1)[1]
        said = (tmp_path / "streamlit.log").read_text()
        assert f"on the network at http://127.0.0.2:{port}" in said, said
        teacher = browser.new_context(viewport={"width": 1280, "height": 720}).new_page()
        teacher.goto(f"http://localhost:{port}/board")
        main = teacher.get_by_test_id("stMain")
        main.get_by_role("button", name="Start a class board").click()
        code = main.get_by_test_id("stCode")
        expect(code).to_contain_text(f"http://127.0.0.2:{port}/join?board=", timeout=60_000)
        join_url = code.inner_text().strip()
        box, shown = code.bounding_box(), teacher.evaluate("() => window.innerWidth")
        assert box is not None and box["x"] + box["width"] <= shown, box  # the whole link is on screen
        expect(main.get_by_text("Phones cannot open")).to_have_count(0)
        _shot(teacher, "13-board-lan-1280x720")
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                    user_agent=PHONE_USER_AGENT).new_page()  # fmt: skip
        phone.goto(join_url)
        expect(phone.get_by_role("heading", name="What do computers see?")).to_be_visible(timeout=60_000)
        phone.locator("input[type=file]").set_input_files(str(zidane_path))
        expect(phone.get_by_text("zidane.jpg")).to_be_visible(timeout=30_000)
        phone.get_by_role("button", name="Send to the board").click()
        expect(phone.get_by_text("On the board!")).to_be_visible(timeout=60_000)
        expect(main.get_by_text("1 photo from the class")).to_be_visible(timeout=30_000)
        teacher.get_by_test_id("stSidebar").get_by_text("Presentation mode").click()  # on the projector
        thumbnail = main.locator(".st-key-board-photos [data-testid=stImage] img").first
        expect(thumbnail).to_be_visible(timeout=30_000)
        teacher.wait_for_function("() => [...document.querySelectorAll('.st-key-board-photos img')]"
                                  ".some(img => img.getBoundingClientRect().width >= 400)", timeout=30_000)  # fmt: skip
        museum = main.locator("[data-testid=stTable] td").first  # the tally as text, enlarged
        expect(museum).to_have_css("font-size", "21.6px", timeout=30_000)
        _shot(teacher, "13-board-lan-presenting-1280x720")
        teacher.close()
        phone.close()


def test_a_guess_is_said_to_be_one_in_the_browser(dashboard, browser, tmp_path):
    """Noise: no label reaches the floor, so the page says "Not sure" and shows the three best guesses' bars."""
    noise = tmp_path / "noise.png"
    cv2.imwrite(str(noise), np.random.default_rng(1).integers(0, 255, (300, 400, 3), np.uint8))
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    page.goto(dashboard)
    page.locator("input[type=file]").set_input_files(str(noise))
    main = page.get_by_test_id("stMain")
    expect(main.get_by_test_id("stMetricValue").filter(has_text="Not sure")).to_be_visible(timeout=90_000)
    expect(main.get_by_text("The classifier is not sure what this photo shows")).to_be_visible()
    expect(main.locator(".js-plotly-plot").filter(has_text="ImageNet top-3")).to_be_visible(timeout=30_000)
    _shot(page, "4b-analyze-not-sure-1280x720")
    page.close()
