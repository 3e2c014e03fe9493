"""Four browser sessions at once on one ``lesionai serve``: each its own scene, no result mixed, memory given back.

Four Chromium contexts (four sessions, so four session processes) open ProstateX-0000 or ProstateX-0001
(two each) and analyze at the same moment with a tiny untrained detector (the bundled model would take
minutes for four analyses on two cores; this test is about sessions, not scores). Bounded: the whole
run is cancelled after :data:`RUN_TIMEOUT_S`. Checked: no error in any page; each page shows its own
study's case and the rows of its own scene and of its own result folder; sessions on the same study
show the same rows, the two studies different ones; analyses of one study never overlapped (one at a
time per study, across sessions); after the sessions ended, the server's process tree holds no more than
100 MB above what it held before.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from itertools import pairwise
from pathlib import Path

import pytest
from browser_support import CHROMIUM_ARGS, copy_series, require_chromium, start_server, stop_server, tree_rss_mb
from conftest import require_module, save_tiny_model

pytestmark = [pytest.mark.browser, pytest.mark.realdata]
async_api = require_module("playwright.async_api", "needs Playwright (pip install playwright==1.65.2)")
require_module("trame_slicer", "needs the slicer-core and trame-slicer wheels (pip install -e '.[mrml]')")
CHROMIUM = require_chromium()
RUN_TIMEOUT_S = 240.0
WAIT_MS = 200_000
STUDIES = ("ProstateX-0000", "ProstateX-0001", "ProstateX-0000", "ProstateX-0001")
async_api.expect.set_options(timeout=WAIT_MS)  # four sessions share two cores: every step waits long


@pytest.fixture(scope="module")
def studies(prostatex_dir, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("load-studies")
    copy_series(prostatex_dir / "ProstateX-0000", root / "ProstateX-0000", ("4.", "7.", "8."))
    copy_series(prostatex_dir / "ProstateX-0001", root / "ProstateX-0001", ("8.", "9.", "10."))
    return root


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory) -> Path:
    """A model store whose active version is the seeded untrained tiny detector."""
    from LesionAILib.models.store import ModelStore

    folder = tmp_path_factory.mktemp("tiny-store")
    store = ModelStore(folder / "store")
    store.activate(store.add(save_tiny_model(folder / "tiny.safetensors", "tiny-untrained", seed=1), note="load"))
    return store.root


async def _one_session(browser, address: str, study: str) -> dict:
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    page = await context.new_page()
    page.set_default_timeout(WAIT_MS)
    expect = async_api.expect
    try:
        await page.goto(address)
        await page.get_by_test_id("study-item").filter(has_text=f"{study}/").first.click()
        await expect(page.get_by_test_id("roles")).to_contain_text("series")
        await page.get_by_test_id("analyze").click()
        await expect(page.get_by_test_id("status")).to_contain_text("candidate(s); case score")
        rows = []
        for row in await page.get_by_test_id("candidate-row").all():
            cells = await row.locator("td").all()
            rows.append({await cell.get_attribute("data-column"): (await cell.inner_text()).strip() for cell in cells})
        base = page.url.rsplit("/", 1)[0]
        scene = await (await context.request.get(base + "/lesionai/inspect")).json()
        return {"study": study, "session": base.rsplit("/", 1)[1], "rows": rows, "scene": scene,
                "errors": await page.get_by_test_id("error").count()}
    finally:
        await context.close()


async def _four_sessions(address: str) -> list[dict]:
    async with async_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            return await asyncio.gather(*(_one_session(browser, address, study) for study in STUDIES))
        finally:
            await browser.close()


def _open_sessions(server) -> int:
    request = urllib.request.Request(server.base + "/api/sessions", headers={"Authorization": f"Bearer {server.token}"})
    listed = json.load(urllib.request.urlopen(request, timeout=30))
    return len(listed["sessions"]) + listed["starting"]


def test_four_sessions_at_once_keep_their_own_studies_and_give_memory_back(studies, tiny_store, tmp_path):
    server = start_server(studies, tmp_path / "work", "--store", str(tiny_store), "--spare-sessions", "0",
                          "--max-sessions", "4", "--idle-timeout", "2")
    try:
        before_mb = tree_rss_mb(server.process.pid)
        sessions = asyncio.run(asyncio.wait_for(_four_sessions(server.address), RUN_TIMEOUT_S))
        deadline = time.monotonic() + 90
        while _open_sessions(server):  # the pages closed: each session process ends after its idle timeout
            assert time.monotonic() < deadline, "session processes did not end"
            time.sleep(0.5)
        after_mb = tree_rss_mb(server.process.pid)
    finally:
        assert stop_server(server) == 0
    assert [s["errors"] for s in sessions] == [0, 0, 0, 0]
    assert len({s["session"] for s in sessions}) == 4
    for session in sessions:
        scene = session["scene"]
        assert scene["case_id"].startswith(session["study"]), (session["study"], scene["case_id"])
        assert [row["id"] for row in session["rows"]] == [str(row["id"]) for row in scene["rows"]]
        assert [row["S mm"] for row in session["rows"]] == [f"{row['S mm']:.2f}" for row in scene["rows"]]
        kept = server.work / "sessions" / session["session"] / "results" / scene["case_id"] / "candidates.json"
        stored = json.loads(kept.read_text())
        assert [c["id"] for c in stored] == [row["id"] for row in scene["rows"]]
    first, second, third, fourth = (s["rows"] for s in sessions)
    assert first == third and second == fourth and first and first != second
    records = [json.loads(line) for line in server.access_log.read_text().splitlines()]
    for study in ("ProstateX-0000", "ProstateX-0001"):
        spans = {}
        for record in records:
            if record["event"] in ("analysis_started", "analysis_ended") and record["study"].startswith(study + "/"):
                spans.setdefault(record["session"], []).append(record["time"])
        assert len(spans) == 2 and all(len(times) == 2 for times in spans.values()), spans
        ordered = sorted(spans.values())
        assert all(earlier[1] <= later[0] for earlier, later in pairwise(ordered)), f"{study}: analyses overlapped"
    assert after_mb - before_mb < 100, f"server tree {before_mb:.0f} MB before, {after_mb:.0f} MB after"
