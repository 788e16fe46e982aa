"""The case report: one photo's result as a PDF the doctor can file, built in memory.

fpdf2 writes it: pure Python, maintained, no system libraries, and it returns bytes, so nothing
the doctor uploaded or typed touches the disk. Text is set in DejaVu Sans (shipped with matplotlib)
because the PDF core fonts are latin-1 only and would mangle "≥" and names.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
from fpdf import FPDF
from fpdf.fonts import FontFace
from PIL import Image

from .bundle import ModelBundle
from .classifier import Prediction
from .explain import overlay
from .patient import Patient
from .referral import REFERRAL_MESSAGE
from .vocab import CLASS_NAMES, MALIGNANT

DISCLAIMER = ("Decision support, not a diagnosis.\nThe model estimates how likely each of seven diagnoses is "
              "for a dermoscopy photo. Final diagnosis rests with the clinician and, where in doubt, "
              "histopathology.")
SPLIT_NAMES = {"val": "validation", "test": "test"}
SCORE_NAMES = {"melanoma": "melanoma probability", "malignant": "malignant probability (mel + bcc + akiec)"}
RED, AMBER, GREY = (178, 34, 34), (150, 90, 0), (90, 90, 90)
IMAGE_SIDE_PX = 800  # photos are shrunk to this for the PDF: sharp in print, small file


def referral_statement(prediction: Prediction, bundle: ModelBundle) -> str | None:
    """Score against threshold and how the threshold was chosen; None when the bundle has no rule."""
    rule = prediction.referral
    if rule is None:
        return None
    card = bundle.card.get("referral") or {}
    split = card.get("chosen_on", "val")
    chosen = (f"chosen on {SPLIT_NAMES.get(split, split)} for ≥ {card['target_sensitivity']:.0%} melanoma sensitivity"
              if "target_sensitivity" in card else "")
    score = f"{SCORE_NAMES.get(rule.kind, rule.kind).capitalize()} {prediction.referral_score:.1%}"
    if prediction.refer:
        how = f"; the threshold was {chosen}." if chosen else "."
        return f"{score} ≥ referral threshold {rule.threshold:.1%}{how}"
    how = f" ({chosen})." if chosen else "."
    return f"{score} is below the referral threshold {rule.threshold:.1%}{how}"


def case_report_pdf(prediction: Prediction, patient: Patient, bundle: ModelBundle, heatmaps: dict[str, np.ndarray],
                    created: datetime, *, opacity: float = 0.45, colour_scale: str = "jet") -> bytes:
    """A one- or two-page A4 PDF of one analysis; ``heatmaps`` maps a method name to its heat-map."""
    pdf = ReportPdf(created)
    pdf.add_page()
    pdf.heading("Skin lesion case report", size=16, keep_with_next=0)
    pdf.line_of_text(f"Created {created:%Y-%m-%d %H:%M} {created.tzname() or ''}".rstrip()
                     + " · Decision support, not a diagnosis", colour=GREY)
    pdf.ln(2)

    if prediction.not_lesion_reasons:
        pdf.warning("This does not look like a dermoscopy photo of a skin lesion: "
                    + "; ".join(prediction.not_lesion_reasons)
                    + ". No diagnosis is offered; the output below is not meaningful for this photo.", RED)
    statement = referral_statement(prediction, bundle)
    if statement and prediction.refer:
        pdf.warning(f"{REFERRAL_MESSAGE}\n{statement}", RED)
    elif statement:
        pdf.line_of_text(statement, colour=GREY)
    reasons = prediction.uncertainty_reasons()
    if reasons:
        pdf.warning("The model is unsure about this lesion: " + "; ".join(reasons)
                    + ". Treat this result with caution and consider specialist review.", AMBER)

    images = {"Photo": prediction.image,
              "Soft-attention map (the model's own)": overlay(prediction.image, prediction.attention_map,
                                                              opacity, colour_scale)}
    images |= {f"{method} for {CLASS_NAMES[prediction.top]}": overlay(prediction.image, heatmap, opacity, colour_scale)
               for method, heatmap in heatmaps.items()}
    pdf.image_row(images)
    pdf.line_of_text("Red: regions that weighed most; blue: least. Heat-maps show what drove the model, "
                     "not where the lesion is malignant.", colour=GREY, size=8)

    pdf.heading("Patient (as entered)")
    pdf.rows([("Age", "unknown" if patient.age is None else f"{patient.age:g} years"),
              ("Sex", patient.sex), ("Body site", patient.site)], widths=(40, 140))

    pdf.heading("Probabilities of the seven diagnoses")
    pdf.rows([("Rank", "Diagnosis", "Probability")]
             + [(str(rank), f"{CLASS_NAMES[code]} ({code})", f"{p:.1%}")
                for rank, (code, p) in enumerate(prediction.ranked, start=1)]
             + [("", f"Malignant or pre-malignant ({' + '.join(MALIGNANT)})",
                 f"{prediction.malignant_probability:.1%}")],
             widths=(15, 135, 30), header=True)

    pdf.heading("Model")
    card = bundle.card
    test = (bundle.metrics("test") or {}).get("without_metadata", {})
    scores = [("Model", f"{bundle.name} ({bundle.architecture}, {bundle.input_size}px input)"),
              ("Version", f"trained {card.get('date', 'unknown')[:10]}, card version {card.get('card_version', '?')}")]
    if test:
        scores.append(("Held-out test split", (
            f"balanced accuracy {test['balanced_accuracy']:.3f}, macro AUC {test['macro_auc']:.3f}, "
            f"melanoma recall {test['per_class']['mel']['recall']:.3f} ({test['n_images']} images, "
            "patient details unknown)")))
    if prediction.referral is not None:
        scores.append(("Referral rule", prediction.referral.describe()))
    pdf.rows(scores, widths=(40, 140))

    pdf.ln(3)
    pdf.warning(DISCLAIMER, GREY)
    return bytes(pdf.output())


class ReportPdf(FPDF):
    """An A4 document in DejaVu Sans with the few layout moves the report needs."""

    def __init__(self, created: datetime):
        from matplotlib import get_data_path

        super().__init__(format="A4")
        self.set_margins(15, 15, 15)
        self.set_auto_page_break(True, margin=15)
        self.set_creation_date(created)
        self.set_title("Skin lesion case report")
        self.set_image_filter("DCTDecode")  # JPEG inside the PDF: a tenth of the size of lossless
        fonts = f"{get_data_path()}/fonts/ttf"
        self.add_font("DejaVu", "", f"{fonts}/DejaVuSans.ttf")
        self.add_font("DejaVu", "B", f"{fonts}/DejaVuSans-Bold.ttf")
        self.set_font("DejaVu", size=10)

    def heading(self, text: str, size: float = 12, keep_with_next: float = 35):
        """A bold title, moved to a new page with its section when fewer than ``keep_with_next`` mm are left."""
        if self.will_page_break(keep_with_next):
            self.add_page()
        self.ln(2)
        self.set_font("DejaVu", "B", size)
        self.cell(0, size * 0.5, text, new_x="LMARGIN", new_y="NEXT")
        self.set_font("DejaVu", "", 10)
        self.ln(1)

    def line_of_text(self, text: str, colour=(0, 0, 0), size: float = 9):
        self.set_text_color(*colour)
        self.set_font_size(size)
        self.multi_cell(0, size * 0.5, text, align="L", new_x="LMARGIN", new_y="NEXT")
        self.set_text_color(0, 0, 0)
        self.set_font_size(10)

    def warning(self, text: str, colour):
        """A framed block in ``colour``; its first line is bold, the rest small print."""
        first, _, rest = text.partition("\n")
        parts = [(first, "B", 10, 5, (2, 3, 0 if rest else 2))] + ([(rest, "", 8.5, 4.5, (0, 3, 2))] if rest else [])
        height = 0
        for part, style, size, line, padding in parts:
            self.set_font("DejaVu", style, size)
            height += self.multi_cell(0, line, part, padding=padding, dry_run=True, output="HEIGHT")
        if self.will_page_break(height):  # a frame is never split across pages
            self.add_page()
        self.set_draw_color(*colour)
        self.set_text_color(*colour)
        self.set_line_width(0.6)
        top = self.get_y()
        for part, style, size, line, padding in parts:
            self.set_font("DejaVu", style, size)
            self.multi_cell(0, line, part, align="L", new_x="LMARGIN", new_y="NEXT", padding=padding)
        self.rect(self.l_margin, top, self.epw, self.get_y() - top)
        self.set_font("DejaVu", "", 10)
        self.set_text_color(0, 0, 0)
        self.set_draw_color(0, 0, 0)
        self.set_line_width(0.2)
        self.ln(3)

    def image_row(self, images: dict[str, np.ndarray]):
        """Captioned images side by side, up to three per row."""
        gap, per_row = 4, min(3, len(images))
        side = (self.epw - gap * (per_row - 1)) / per_row
        items = list(images.items())
        for start in range(0, len(items), per_row):
            row = items[start:start + per_row]
            heights = [side * array.shape[0] / array.shape[1] for _, array in row]
            if self.will_page_break(max(heights) + 10):
                self.add_page()
            top = self.get_y()
            self.set_font_size(8)
            for i, (caption, array) in enumerate(row):
                picture = Image.fromarray(array)
                picture.thumbnail((IMAGE_SIDE_PX, IMAGE_SIDE_PX))
                x = self.l_margin + i * (side + gap)
                self.image(picture, x=x, y=top, w=side)
                self.set_xy(x, top + heights[i] + 1)
                self.multi_cell(side, 3.5, caption, align="C")
            self.set_font_size(10)
            self.set_xy(self.l_margin, top + max(heights) + 9)

    def rows(self, rows: list[tuple[str, ...]], widths: tuple[float, ...], header: bool = False):
        with self.table(col_widths=widths, width=sum(widths), align="LEFT", first_row_as_headings=header,
                        headings_style=FontFace(emphasis="BOLD"), borders_layout="HORIZONTAL_LINES",
                        text_align="LEFT", line_height=5, padding=0.8) as table:
            for values in rows:
                table.row(values)
