"""report.html in a real browser: headless Chromium loads it offline, draws every part, and shows
the figures of report.json.

Needs Playwright (the ``dev`` extra) and a Chromium binary: ``$LSVOS_CHROMIUM``, else the first of
``chromium``, ``chromium-browser``, ``google-chrome`` on PATH (Debian: ``apt-get install
chromium``; ``.ci/run`` installs it where it can). Without either the tests skip and say which is
missing. The run is :func:`tests.pipeline.test_report.make_run`'s (the demo recipe on a two-video
synthetic split); a screenshot of the whole page is written next to it and checked for the
colours the legend promises.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pipeline.orchestration.report.graph import ReportGraph
from tests.pipeline.test_report import make_run

VIEWPORT = {"width": 1440, "height": 900}  # a laptop screen
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def chromium_binary() -> str | None:
    """The Chromium to drive: ``$LSVOS_CHROMIUM`` or the first browser on PATH."""
    if os.environ.get("LSVOS_CHROMIUM"):
        return os.environ["LSVOS_CHROMIUM"]
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser_page(tmp_path_factory: pytest.TempPathFactory) -> Any:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright is not installed (pip install -e '.[dev]')"
    )
    binary = chromium_binary()
    if binary is None:
        pytest.skip("no Chromium binary: set LSVOS_CHROMIUM or install chromium (apt)")
    plan, _ = make_run(tmp_path_factory.mktemp("report-browser"))
    run_dir = Path(plan.run_dir)
    report = json.loads((run_dir / "report.json").read_text())
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=binary, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport=VIEWPORT)
            requests: list[str] = []
            errors: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto((run_dir / "report.html").resolve().as_uri(), wait_until="load")
            shot = run_dir / "report.png"
            page.screenshot(path=str(shot), full_page=True)
            yield page, report, run_dir, requests, errors, shot
        finally:
            browser.close()


def test_loads_offline_without_errors(browser_page: Any) -> None:
    page, _, _, requests, errors, _ = browser_page
    assert errors == []
    outside = [u for u in requests if not u.startswith(("file:", "data:"))]
    assert outside == [], "the page must need nothing online"
    assert page.title()


def test_every_tile_image_decodes(browser_page: Any) -> None:
    page, *_ = browser_page
    images = page.eval_on_selector_all(
        "img", "els => els.map(e => [e.complete, e.naturalWidth, e.naturalHeight])"
    )
    assert images, "the stage sections show overlay tiles"
    assert all(done and w > 0 and h > 0 for done, w, h in images)


def test_rendered_node_table_equals_report_json(browser_page: Any) -> None:
    page, report, run_dir, *_ = browser_page
    rows = page.eval_on_selector_all(
        "table.nodes tbody tr",
        "rows => rows.map(r => [...r.cells].slice(0, 9).map(c => c.innerText.trim()))",
    )
    assert [r[0] for r in rows] == ReportGraph.from_report(report, run_dir).names
    for name, stage, kind, _inputs, jf, j, f, expressions, _computed in rows:
        scores = report["scores"][name]
        assert jf == f"{100 * scores['JF']:.1f}"
        assert (j, f) == (f"{100 * scores['J']:.1f}", f"{100 * scores['F']:.1f}")
        assert int(expressions) == scores["expressions"]
        node = report["nodes"][name]
        assert (stage, kind) == (node["stage"], node["kind"])


def test_layout_fits_the_screen(browser_page: Any) -> None:
    page, report, *_ = browser_page
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= VIEWPORT["width"], "no horizontal scrolling"
    sections = page.eval_on_selector_all(
        "section", "els => els.map(e => [e.id, e.getBoundingClientRect().height])"
    )
    assert [s for s, _ in sections][:3] == ["summary", "graph", "nodes"]
    stages = {s.removeprefix("stage-") for s, _ in sections if s.startswith("stage-")}
    assert stages and stages <= {node["stage"] for node in report["nodes"].values()}
    for section, height in sections:
        assert 0 < height <= VIEWPORT["height"], f"section {section} is {height:.0f} px tall"
    boxes = page.eval_on_selector_all(
        "section#graph svg g.node",
        "els => els.map(e => { const b = e.getBoundingClientRect(); return [b.width, b.height]; })",
    )
    assert len(boxes) == len(report["nodes"])
    assert all(w > 0 and h > 0 for w, h in boxes)


def test_screenshot_shows_the_legend_colours(browser_page: Any) -> None:
    *_, shot = browser_page
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    r, g, b = pixels.T

    def share(mask: np.ndarray) -> float:
        return float(mask.mean())

    assert share((r > 200) & (g < 60) & (b < 60)) + share((r > 150) & (g < 90) & (b < 90)) > 0
    assert share((g > 200) & (r < 60) & (b < 60)) > 0, "ground-truth outlines (green)"
    assert share((abs(r - 0x9C) < 4) & (abs(g - 0xC3) < 4) & (abs(b - 0xE6) < 4)) > 0, "J&F bars"
    assert share((r > 240) & (g > 240) & (b > 240)) < 0.95, "the page is not blank"
