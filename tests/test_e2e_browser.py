"""A real browser session: Playwright drives Debian's Chromium against `streamlit run app.py`."""

import io
import shutil
from pathlib import Path

import pytest
from conftest import HAM10000
from PIL import Image
from synthetic import dermoscopy_like

from skin_core.loadtest import RESULT_TEXT, TUCKED_AWAY_TEXT, heatmap_caption

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


def lesion_photo(path: Path) -> Path:
    """A real HAM10000 test-split melanoma when the shared data is here (the lesion check accepts it), else a drawn
    one."""
    from skin_core import data

    if HAM10000.is_dir():
        table = data.split_table(data.read_ham10000(HAM10000), "test")
        Image.open(table[table["dx"] == "mel"]["path"].iloc[0]).save(path, quality=95)
    else:
        dermoscopy_like(5).save(path, quality=90)
    return path


def probability_bars(page) -> list[tuple[str, int, bool]]:
    """The seven probability bars as (label, aria-valuenow in %, label shown whole on one line)."""
    return page.locator("[data-testid=stProgress]").evaluate_all("""bars => bars.map(bar => {
        const label = bar.querySelector("[data-testid=stMarkdownContainer]");
        return [label.innerText, Number(bar.querySelector("[role=progressbar]").getAttribute("aria-valuenow")),
                label.scrollWidth <= label.clientWidth];
    })""")


def test_doctor_uploads_a_photo_and_reads_the_result(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright
    from pypdf import PdfReader

    photo = lesion_photo(tmp_path / "lesion.jpg")
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(server.url)
        page.set_input_files("input[type=file]", str(photo))
        expect(page.get_by_text("lesion.jpg (")).to_be_visible(timeout=60_000)
        page.get_by_label("Age (years)", exact=True).fill("58")
        choose(page, "Sex", "Female")
        choose(page, "Body site", "Back")
        page.get_by_role("button", name="Analyse").click()
        caption, tucked = page.get_by_text(heatmap_caption()), page.get_by_text(TUCKED_AWAY_TEXT)
        expect(caption.or_(tucked).first).to_be_visible(timeout=120_000)
        if not caption.is_visible():  # a drawn photo may be called "not a dermoscopy photo": output in an expander
            tucked.click()
        expect(page.get_by_text(RESULT_TEXT)).to_be_visible(timeout=120_000)
        expect(page.get_by_text("Soft-attention map (the model's own)")).to_be_visible(timeout=120_000)
        expect(caption).to_be_visible(timeout=120_000)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(ARTIFACTS / "diagnose.png"), full_page=True)
        bars = probability_bars(page)
        assert len(bars) == 7, bars
        shown = [float(label.rsplit(": ", 1)[1].strip("%")) for label, _, _ in bars]
        assert shown == sorted(shown, reverse=True), "most likely diagnosis first"
        assert abs(sum(shown) - 100) < 0.5
        assert all(abs(value - share) <= 1 for (_, value, _), share in zip(bars, shown)), "bar length = its label"
        assert all(whole for _, _, whole in bars), "every label is shown whole"

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

        with page.expect_download() as download:
            page.get_by_role("button", name="Download case report (PDF)").click()
        assert download.value.suggested_filename.startswith("case_report_")
        report = Path(download.value.path()).read_bytes()
        text = " ".join(sheet.extract_text() for sheet in PdfReader(io.BytesIO(report)).pages)
        top_diagnosis = differential[0].rsplit(":", 1)[0]  # "Melanocytic nevus (nv)"
        assert "58 years" in text and "female" in text and top_diagnosis in text

        page.get_by_role("link", name="Model metrics").click()
        expect(page.get_by_text("All models side by side")).to_be_visible(timeout=60_000)
        page.wait_for_timeout(2500)
        page.screenshot(path=str(ARTIFACTS / "metrics.png"), full_page=True)
        browser.close()
