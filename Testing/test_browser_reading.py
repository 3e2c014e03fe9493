"""The browser reading page (``lesionai serve``), used as a radiologist uses it, in a real browser.

Debian's Chromium driven by Playwright opens the page served from a copy of real ProstateX studies,
meets bad input first (a study without ADC, a series with a missing slice, names outside the studies
folder), opens ProstateX-0000, analyzes it with the bundled demo model, follows the progress bar,
reads the candidate table, clicks rows and checks against the session's scene that every view's plane
passes through the candidate, checks the screenshot's pixels (heat colour inside the outline, none
with the heatmap off), classifies a placed point, cancels a second analysis, downloads the result, and
checks the access log and the token on the page, its websocket and the session's own port. Steps run
in order on one page. Screenshots go to pytest's temporary folder (``LESIONAI_UPDATE_DOCS=1`` also
writes ``docs/browser_reading.png``).
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import re
import shutil
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
from browser_support import (
    CHROMIUM_ARGS,
    T2_SLICE_MM,
    copy_series,
    disc,
    distance_to_plane_mm,
    heat_shift,
    outline_pixels,
    ras_to_view_pixel,
    require_chromium,
    start_server,
    stop_server,
)
from conftest import ROOT, require_module

pytestmark = [pytest.mark.browser, pytest.mark.realdata]
sync_api = require_module("playwright.sync_api", "needs Playwright (pip install playwright==1.65.2)")
require_module("trame_slicer", "needs the slicer-core and trame-slicer wheels (pip install -e '.[mrml]')")
CHROMIUM = require_chromium()
expect = sync_api.expect
WAIT_MS = 120_000
expect.set_options(timeout=30_000)  # the server shares two cores with the browser: renders can take seconds
LINKED_OUT = "linked-out"


@pytest.fixture(scope="module")
def studies(prostatex_dir, tmp_path_factory) -> Path:
    """A studies root: ProstateX-0000 (T2, ADC, high-b), the same without ADC, a series missing a slice, a link out."""
    root = tmp_path_factory.mktemp("studies")
    copy_series(prostatex_dir / "ProstateX-0000", root / "ProstateX-0000", ("4.", "7.", "8."))
    copy_series(prostatex_dir / "ProstateX-0000", root / "ProstateX-0000-no-adc", ("4.", "8."))
    shutil.copytree(prostatex_dir / "bad-input" / "ProstateX-0000-missing-slice", root / "missing-slice")
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text("not a study")
    (root / LINKED_OUT).symlink_to(outside, target_is_directory=True)
    return root


@pytest.fixture(scope="module")
def server(studies, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve-work")
    running = start_server(studies, work, "--store", str(work / "empty-store"), "--idle-timeout", "60")
    yield running
    assert stop_server(running) == 0


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("browser-shots")


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1500, "height": 1100})
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        yield page
        context.close()
        browser.close()


def _base(page) -> str:
    return page.url.rsplit("/", 1)[0]


def _inspect(page) -> dict:
    answer = page.context.request.get(_base(page) + "/lesionai/inspect")
    assert answer.status == 200
    return answer.json()


def _error(page) -> str:
    banner = page.get_by_test_id("error")
    expect(banner).to_be_visible()
    return banner.inner_text().strip()


def _rows(page) -> list[dict]:
    """The candidate table as the page shows it: one dict per row, column -> text."""
    rows = []
    for row in page.get_by_test_id("candidate-row").all():
        cells = row.locator("td").all()
        rows.append({cell.get_attribute("data-column"): cell.inner_text().strip() for cell in cells})
    return rows


def _ras(row: dict) -> tuple[float, float, float]:
    return float(row["R mm"]), float(row["A mm"]), float(row["S mm"])


def _view_image(page, index: int):
    """The ``index``-th slice view's image element (T2, ADC, high-b) and its pixels [H, W, 3]."""
    from PIL import Image

    element = page.get_by_test_id("views").locator("img.image-display-area").nth(index)
    pixels = np.asarray(Image.open(io.BytesIO(element.screenshot())).convert("RGB"))
    return element, pixels


def _websocket_handshake(base: str, path: str, headers: dict | None = None) -> int:
    """The HTTP status a websocket upgrade request to ``base + path`` gets (101 when accepted)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("GET", path, headers={
        "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), **(headers or {})})
    status = connection.getresponse().status
    connection.close()
    return status


def _settle(page, ms: int = 1500) -> None:
    """Let the server render and the page receive the new images."""
    page.wait_for_timeout(ms)


class TestReadingPage:
    def test_01_the_token_guards_the_page_the_api_and_the_websocket(self, server):
        for path in ("/", "/api/sessions", "/s/anything/index.html"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(server.base + path, timeout=30)
            assert refused.value.code == 401, path
        request = urllib.request.Request(server.base + "/api/studies",
                                         headers={"Authorization": f"Bearer {server.token}"})
        listed = json.load(urllib.request.urlopen(request, timeout=30))["studies"]
        assert {study["path"] for study in listed} == {
            "ProstateX-0000/07-07-2011", "ProstateX-0000-no-adc/07-07-2011", "missing-slice/07-07-2011"}
        assert _websocket_handshake(server.base, "/s/anything/ws") == 401

    def test_02_the_page_opens_without_the_token_in_its_address_and_lists_the_studies_with_roles(self, page, server,
                                                                                                   studies):
        page.goto(server.address)
        assert re.fullmatch(re.escape(server.base) + r"/s/[\w-]+/index\.html", page.url), page.url
        items = page.get_by_test_id("study-item")
        expect(items).to_have_count(3)
        texts = {item.inner_text() for item in items.all()}
        good = next(t for t in texts if "ProstateX-0000/07-07-2011" in t and "no-adc" not in t)
        assert "T2: series 4 (t2_tse_tra)" in good and "ADC: series 7" in good and "high-b: series 8" in good
        no_adc = next(t for t in texts if "no-adc" in t)
        assert "ADC" in no_adc.split("\n")[-1] and "series 7" not in no_adc
        assert "missing 1 slice" in next(t for t in texts if "missing-slice" in t)
        assert str(studies) not in page.content()  # the server's own paths never reach the page

    @pytest.mark.parametrize(
        ("how", "name", "expected"),
        [
            ("list", "ProstateX-0000-no-adc", "ADC"),
            ("list", "missing-slice", "missing 1 slice"),
            ("typed", "../outside", "leaves the studies folder"),
            ("typed", "/etc", "absolute path"),
            ("typed", LINKED_OUT, "links outside the studies folder"),
        ],
    )
    def test_03_bad_input_gets_a_one_line_message_and_the_server_keeps_serving(self, page, server, how, name,
                                                                               expected):
        if how == "list":
            page.get_by_test_id("study-item").filter(has_text=name).click()
        else:
            page.get_by_test_id("study-path").locator("input").fill(name)
            page.get_by_test_id("open-study").click()
        expect(page.get_by_test_id("error")).to_contain_text(expected)
        message = _error(page)
        assert "\n" not in message and len(message) < 400 and message.startswith("Cannot load the study: ")
        assert page.get_by_test_id("roles").count() == 0  # nothing was loaded
        request = urllib.request.Request(server.base + "/api/sessions",
                                         headers={"Authorization": f"Bearer {server.token}"})
        assert len(json.load(urllib.request.urlopen(request, timeout=30))["sessions"]) == 1

    def test_04_opening_prostatex_0000_shows_its_roles_in_three_linked_views(self, page):
        page.get_by_test_id("study-path").locator("input").fill("")
        page.get_by_test_id("study-item").filter(has_text="ProstateX-0000/07-07-2011").first.click()
        roles = page.get_by_test_id("roles")
        expect(roles).to_contain_text("series")
        lines = roles.inner_text().split("\n")
        assert [line.split(":")[0] for line in lines] == ["T2", "ADC", "high-b"]
        assert [re.search(r"\((\d+):", line).group(1) for line in lines] == ["4", "7", "8"]
        expect(page.get_by_test_id("error")).to_have_count(0)
        scene = _inspect(page)
        assert scene["study"] == "ProstateX-0000/07-07-2011" and scene["rows"] == []
        assert [scene["views"][name]["background"].split(" (")[1].split(":")[0] for name in ("Red", "Yellow", "Green")
                ] == ["4", "7", "8"]
        normals = [np.array(scene["views"][name]["slice_to_ras"])[:3, 2] for name in ("Red", "Yellow", "Green")]
        assert all(np.allclose(normal, normals[0], atol=1e-6) for normal in normals)  # linked: one plane

    def test_05_analyze_moves_the_progress_bar_and_fills_the_table(self, page, shots):
        page.get_by_test_id("analyze").click()
        expect(page.get_by_test_id("analyze")).to_have_text(re.compile("cancel", re.I))
        progress, deadline = [], time.monotonic() + WAIT_MS / 1000
        bar = page.get_by_test_id("analysis-progress")
        while page.get_by_test_id("candidate-row").count() == 0:
            assert time.monotonic() < deadline, f"the analysis did not finish; progress seen {progress}"
            progress.append(int(float(bar.get_attribute("aria-valuenow") or 0)))
            page.wait_for_timeout(250)
        progress.append(int(float(bar.get_attribute("aria-valuenow"))))
        assert progress == sorted(progress), progress  # forward only
        assert any(0 < value < 100 for value in progress) and progress[-1] == 100, progress
        rows = _rows(page)
        probabilities = [float(row["probability"]) for row in rows]
        assert len(rows) >= 2 and probabilities == sorted(probabilities, reverse=True)
        assert all(row["model"] == "lesionai-demo-phantom" for row in rows)
        expect(page.get_by_test_id("demo-notice")).to_contain_text("not for clinical use")
        score = page.get_by_test_id("case-score").inner_text()
        assert f"Case score {float(rows[0]['probability']):.2f}" in score and "lesionai-demo-phantom" in score
        scene = _inspect(page)
        assert [row["id"] for row in scene["rows"]] == [int(row["id"]) for row in rows]
        for shown, stored in zip(rows, scene["rows"], strict=True):
            assert _ras(shown) == pytest.approx((stored["R mm"], stored["A mm"], stored["S mm"]), abs=0.006)
        page.screenshot(path=shots / "analysed.png")

    def test_06_clicking_a_row_moves_every_view_through_that_candidate(self, page):
        rows = _rows(page)
        second, top = rows[1], rows[0]
        page.get_by_test_id("candidate-row").nth(1).click()
        expect(page.get_by_test_id("candidate-row").nth(1)).to_have_class(re.compile("selected"))
        at_second = _inspect(page)["views"]
        for name, view in at_second.items():
            assert distance_to_plane_mm(view, _ras(second)) < T2_SLICE_MM / 2, name
        page.get_by_test_id("candidate-row").nth(0).click()
        expect(page.get_by_test_id("candidate-row").nth(0)).to_have_class(re.compile("selected"))
        scene = _inspect(page)
        assert scene["selected_candidate"] == int(top["id"])
        for name, view in scene["views"].items():
            assert distance_to_plane_mm(view, _ras(top)) < T2_SLICE_MM / 2, name
        if distance_to_plane_mm(at_second["Red"], _ras(top)) >= T2_SLICE_MM / 2:  # different slices: the views moved
            assert not np.allclose(at_second["Red"]["slice_to_ras"], scene["views"]["Red"]["slice_to_ras"])
        page.keyboard.press("Alt+ArrowDown")  # the Qt panel's shortcuts: next candidate, then back
        expect(page.get_by_test_id("candidate-row").nth(1)).to_have_class(re.compile("selected"))
        assert distance_to_plane_mm(_inspect(page)["views"]["Red"], _ras(second)) < T2_SLICE_MM / 2
        page.keyboard.press("Alt+ArrowUp")
        expect(page.get_by_test_id("candidate-row").nth(0)).to_have_class(re.compile("selected"))

    def test_07_the_t2_view_shows_heat_inside_the_selected_outline_only_while_the_heatmap_shows(self, page, shots):
        # the largest candidate: a small one's highlighted (3-pixel) outline covers all of its inside
        rows = _rows(page)
        index = max(range(len(rows)), key=lambda i: float(rows[i]["volume ml"]))
        top = rows[index]
        page.get_by_test_id("candidate-row").nth(index).click()
        expect(page.get_by_test_id("candidate-row").nth(index)).to_have_class(re.compile("selected"))
        view = _inspect(page)["views"]["Red"]
        assert distance_to_plane_mm(view, _ras(top)) < T2_SLICE_MM / 2
        _settle(page)
        element, shown = _view_image(page, 0)
        centre = ras_to_view_pixel(view, _ras(top), shown.shape[1])
        mm_per_pixel = np.linalg.norm(np.array(view["xy_to_ras"])[:3, 0]) * view["dimensions"][0] / shown.shape[1]
        radius_px = max(3.0, (3 * float(top["volume ml"]) * 1000 / (4 * np.pi)) ** (1 / 3) / mm_per_pixel)
        inside = disc(shown.shape, centre, radius_px)
        around = disc(shown.shape, centre, 2 * radius_px + 6)
        assert outline_pixels(shown)[around].sum() >= 5, "no candidate outline around the candidate's centre"
        Path(shots / "t2_view.png").write_bytes(element.screenshot())
        page.screenshot(path=shots / "reading.png")
        if os.environ.get("LESIONAI_UPDATE_DOCS") == "1":
            page.screenshot(path=ROOT / "docs" / "browser_reading.png")
        switch = page.get_by_test_id("heatmap-visible").locator("input")
        switch.click()
        expect(switch).not_to_be_checked()
        _settle(page)
        hidden_element, hidden = _view_image(page, 0)
        Path(shots / "t2_view_heatmap_hidden.png").write_bytes(hidden_element.screenshot())
        assert _inspect(page)["views"]["Red"]["foreground_opacity"] == 0.0
        heat = heat_shift(shown, hidden)
        assert heat[inside].sum() >= 8 and heat[inside].mean() >= 0.1, f"{heat[inside].mean():.0%} heat inside"
        assert heat[:40, :40].mean() == 0.0  # the black corner outside the T2: no colour either way
        switch.click()
        expect(switch).to_be_checked()
        thumb = page.get_by_test_id("heatmap-threshold").get_by_role("slider")
        thumb.press("End")  # threshold 1: nothing of the heatmap is shown
        expect(thumb).to_have_attribute("aria-valuenow", "1")
        _settle(page)
        assert _inspect(page)["heatmap_threshold"] == pytest.approx(1.0)
        _, above_all = _view_image(page, 0)
        assert heat_shift(above_all, hidden)[inside].sum() < 0.25 * heat[inside].sum()
        thumb.press("Home")
        expect(thumb).to_have_attribute("aria-valuenow", "0")
        for value in ("0.05", "0.1", "0.15", "0.2"):  # one step at a time: each waits for the server's answer
            thumb.press("ArrowRight")
            expect(thumb).to_have_attribute("aria-valuenow", value)
        assert _inspect(page)["heatmap_threshold"] == pytest.approx(0.2)

    def test_08_a_placed_point_is_classified_and_joins_the_table(self, page):
        before = _rows(page)
        top = next(row for row in before if row["id"] == str(_inspect(page)["selected_candidate"]))
        view = _inspect(page)["views"]["Red"]
        page.get_by_test_id("place-point").click()
        expect(page.get_by_test_id("point-result")).to_contain_text("Click")
        element, pixels = _view_image(page, 0)
        column, row = ras_to_view_pixel(view, _ras(top), pixels.shape[1])
        box = element.bounding_box()
        page.mouse.click(box["x"] + column, box["y"] + row)
        expect(page.get_by_test_id("point-result")).to_contain_text("p = ", timeout=WAIT_MS)
        result = page.get_by_test_id("point-result").inner_text()
        after = _rows(page)
        added = [r for r in after if r["id"] not in {b["id"] for b in before}]
        assert len(added) == 1 and added[0]["model"] != "lesionai-demo-phantom" and added[0]["model"] in result
        assert _ras(added[0]) == pytest.approx(_ras(top), abs=1.0)  # where it was clicked (one pixel is < 1 mm)

    def test_09_cancelling_a_second_analysis_keeps_the_previous_result(self, page):
        shown = _rows(page)
        page.get_by_test_id("analyze").click()
        expect(page.get_by_test_id("analyze")).to_have_text(re.compile("cancel", re.I))
        page.get_by_test_id("analyze").click()
        expect(page.get_by_test_id("status")).to_have_text(
            "Analysis cancelled. The previous result is still shown.", timeout=WAIT_MS)
        expect(page.get_by_test_id("analyze")).to_have_text(re.compile("analyze", re.I))
        assert _rows(page) == shown

    def test_10_the_result_folder_downloads_as_a_zip_from_the_work_folder(self, page, server, studies):
        link = page.get_by_test_id("download")
        expect(link).to_be_visible()
        answer = page.context.request.get(_base(page) + "/" + link.get_attribute("href"))
        assert answer.status == 200 and answer.headers["content-type"] == "application/zip"
        archive = zipfile.ZipFile(io.BytesIO(answer.body()))
        names = {Path(name).name for name in archive.namelist()}
        assert {"result.json", "candidates.csv", "heatmap.nii.gz"} <= names
        stored = json.loads(archive.read(next(n for n in archive.namelist() if n.endswith("candidates.json"))))
        detector_rows = [row for row in _rows(page) if row["model"] == "lesionai-demo-phantom"]
        assert len(stored) == len(detector_rows)
        assert list(server.work.glob("sessions/*/results/ProstateX-0000*/result.json"))
        assert not [path for path in studies.rglob("*") if path.suffix in (".json", ".gz", ".csv", ".zip")]

    def test_11_the_access_log_says_who_opened_what_and_what_was_refused(self, server):
        records = [json.loads(line) for line in server.access_log.read_text().splitlines()]
        events = [record["event"] for record in records]
        opened = [r for r in records if r["event"] == "study_opened"]
        assert [r["study"] for r in opened] == ["ProstateX-0000/07-07-2011"]
        assert opened[0]["remote"] == "127.0.0.1" and "HeadlessChrome" in opened[0]["user_agent"]
        refused = [r["study"] for r in records if r["event"] == "study_refused"]
        assert refused == ["ProstateX-0000-no-adc/07-07-2011", "missing-slice/07-07-2011", "../outside", "/etc",
                           LINKED_OUT]
        assert events.count("analysis_started") == 2 and events.count("result_downloaded") == 1
        assert [r["status"] for r in records if r["event"] == "analysis_ended"] == ["finished", "cancelled"]
        assert events.count("denied") >= 4  # the requests of test_01
        assert server.token not in server.access_log.read_text()

    def test_12_a_session_process_answers_only_the_front_server(self, server, page):
        request = urllib.request.Request(server.base + "/api/sessions",
                                         headers={"Authorization": f"Bearer {server.token}"})
        (session,) = json.load(urllib.request.urlopen(request, timeout=30))["sessions"]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{session['port']}/index.html", timeout=30)
        assert refused.value.code == 403
        cookies = "; ".join(f"{cookie['name']}={cookie['value']}" for cookie in page.context.cookies())
        path = f"/s/{session['session']}/ws"
        assert _websocket_handshake(server.base, path, {"Origin": "http://evil.example", "Cookie": cookies}) == 403
