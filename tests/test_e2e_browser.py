"""A real browser session: Playwright drives Debian's Chromium against `streamlit run app.py`."""

import shutil
from pathlib import Path

import pytest
from synthetic import dermoscopy_like

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium not installed (.ci/run installs it)")


def peak_resident_mb(pid: int) -> float:
    """The process's high-water resident memory (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("VmHWM not found")


def choose(page, label: str, option: str):
    page.get_by_label(label, exact=True).click()
    page.get_by_role("option", name=option, exact=True).click()


def test_doctor_uploads_a_photo_and_reads_the_result(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    photo = tmp_path / "lesion.jpg"
    dermoscopy_like(5).save(photo, quality=90)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(server.url)
        page.set_input_files("input[type=file]", str(photo))
        expect(page.get_by_text("lesion.jpg (600 x 450 px)")).to_be_visible(timeout=60_000)
        page.get_by_label("Age (years)", exact=True).fill("58")
        choose(page, "Sex", "Female")
        choose(page, "Body site", "Back")
        page.get_by_role("button", name="Analyse").click()
        expect(page.get_by_text("Where the model looked")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("Soft-attention map (the model's own)")).to_be_visible(timeout=120_000)
        expect(page.get_by_text("Grad-CAM for")).to_be_visible(timeout=120_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "diagnose.png"), full_page=True)

        # The malignant and benign groups are complementary shares of one probability vector.
        metrics = page.locator("[data-testid=stMetricValue]").all_inner_texts()
        shares = [float(m.strip("%")) for m in metrics]
        assert len(shares) == 2 and abs(sum(shares) - 100) < 0.15
        differential = page.locator("li").filter(has_text="%").all_inner_texts()
        assert len(differential) >= 3
        assert page.locator("img").count() >= 4  # preview, original, two overlays
        assert page.locator("[data-testid=stException]").count() == 0
        peak_mb = peak_resident_mb(server.pid)
        assert peak_mb < 1536, f"the app process peaked at {peak_mb:.0f} MB"

        page.get_by_role("link", name="Model metrics").click()
        expect(page.get_by_text("All models side by side")).to_be_visible(timeout=60_000)
        page.wait_for_timeout(2500)
        page.screenshot(path=str(ARTIFACTS / "metrics.png"), full_page=True)
        browser.close()
