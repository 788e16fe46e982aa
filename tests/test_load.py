"""A bounded load test on loopback: 20 browser sessions at once, one of them uploading junk."""

import asyncio
import time

import pytest
from synthetic import dermoscopy_like
from test_e2e_browser import CHROMIUM, CHROMIUM_ARGS, pytestmark  # noqa: F401  (same skip rule)

from skin_core.loadtest import RESULT_TEXT, TUCKED_AWAY_TEXT, heatmap_caption

SESSIONS = 20
DEADLINE_S = 420


async def one_session(browser, url, photo, junk: bool) -> str:
    from playwright.async_api import expect

    context = await browser.new_context(viewport={"width": 1200, "height": 1400})
    context.set_default_timeout(DEADLINE_S * 1000)
    page = await context.new_page()
    try:
        await page.goto(url)
        await page.set_input_files("input[type=file]", str(photo))
        if junk:
            await expect(page.get_by_text("not an image")).to_be_visible(timeout=DEADLINE_S * 1000)
            return "refused"
        await page.get_by_role("button", name="Analyse").click(timeout=DEADLINE_S * 1000)
        caption, tucked = page.get_by_text(heatmap_caption()), page.get_by_text(TUCKED_AWAY_TEXT)
        await expect(caption.or_(tucked).first).to_be_visible(timeout=DEADLINE_S * 1000)
        if not await caption.is_visible():  # called "not a dermoscopy photo": the output is in an expander
            await tucked.click()
        await expect(page.get_by_text(RESULT_TEXT)).to_be_visible(timeout=DEADLINE_S * 1000)
        await expect(caption).to_be_visible(timeout=DEADLINE_S * 1000)
        assert await page.locator("[data-testid=stException]").count() == 0
        return "answered"
    finally:
        await context.close()


async def run_all(url, photos, junk_index):
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            return await asyncio.wait_for(asyncio.gather(
                *(one_session(browser, url, photo, i == junk_index) for i, photo in enumerate(photos)),
                return_exceptions=True), DEADLINE_S)
        finally:
            await browser.close()


def test_twenty_simultaneous_sessions(server, tmp_path):
    photos = []
    for i in range(SESSIONS):
        path = tmp_path / f"lesion{i}.jpg"
        if i == 7:
            path.write_text("this is not an image")
        else:
            dermoscopy_like(i, size=(400, 300)).save(path)
        photos.append(path)
    started = time.time()
    outcomes = asyncio.run(run_all(server.url, photos, junk_index=7))
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert not errors, errors[:3]
    assert outcomes.count("answered") == SESSIONS - 1 and outcomes[7] == "refused"
    print(f"{SESSIONS} sessions answered in {time.time() - started:.0f}s")
