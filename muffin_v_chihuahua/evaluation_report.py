"""evaluate's figures for a person: a short text summary, and a report folder (index.html and report.json).

index.html stands alone and offline: its pictures are data: URIs and its style inline, no script, and its Content
Security Policy lets it load nothing else. The confusion matrix and the reliability diagram are PNGs drawn here with
Pillow and NumPy (matplotlib is not a runtime dependency); the gallery shows every wrong photo with its heatmap
overlaid (heatmaps.overlay), when its prediction carries one."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from muffin_v_chihuahua import heatmaps, images, text_table
from muffin_v_chihuahua.evaluation import CLASSES, LABELS, Outcome
from muffin_v_chihuahua.evidence import NEITHER

# The truth of other folders' photos, as rows name it: they are no class's, and should be called neither.
TRUTH_NAMES = {**{name: name for name in CLASSES}, NEITHER: "other"}
# The confusion matrix picture: a square cell per (truth, verdict), the labels left of and above them.
CELL, LEFT, TOP, MARGIN = 110, 120, 70, 16
WHITE, INK, GRID = (255, 255, 255), (30, 30, 30), (215, 215, 215)
RIGHT_COLOUR, WRONG_COLOUR = (34, 139, 34), (200, 40, 40)  # a cell's colour at its whole row's share
LEAST_TINT = 0.15  # a cell with any photo is tinted at least this much: one wrong photo in a hundred shows
# The reliability diagram: a square plot of side PLOT, PLOT_LEFT from the left and PLOT_TOP from the top.
PLOT, PLOT_LEFT, PLOT_TOP, PLOT_BOTTOM = 360, 70, 40, 80
BAR_COLOUR, CONFIDENCE_COLOUR = (49, 110, 200), (200, 40, 40)
GALLERY_SIDE = 320  # the longest side of a wrong photo in the gallery, in pixels


def rates(figures: dict[str, Any]) -> list[tuple[str, str, str]]:
    """The three shares, as (name, value, what) rows: the text summary's and index.html's alike."""
    return [
        ("accuracy", percent(figures["accuracy"]), "muffin and chihuahua photos given their class"),
        ("flagged", percent(figures["flagged"]), "muffin and chihuahua photos called neither"),
        ("neither caught", percent(figures["neither_caught"]), "other folders' photos called neither"),
    ]


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def summary(figures: dict[str, Any]) -> str:
    """The figures as a few lines of text: the headline shares, per class, the confusion matrix, the wrong photos."""
    classes = figures["classes"]
    in_classes = sum(classes[name]["support"] for name in CLASSES)
    ece = figures["expected_calibration_error"]
    lines = [
        f"{figures['n']} photos judged ({in_classes} muffin or chihuahua, {classes[NEITHER]['support']} other), "
        f"{figures['failed']} failed; by {figures['judged_by']}",
        "",
        *text_table.aligned(
            [
                *rates(figures),
                (
                    "calibration error",
                    "n/a" if ece is None else f"{ece:.3f}",
                    "expected, of the probability of a verdict (not neither)",
                ),
            ]
        ),
        "",
        *text_table.aligned(class_rows(figures)),
        "",
        *text_table.aligned(confusion_rows(figures)),
    ]
    if figures["wrong"]:
        lines += ["", f"wrong photos: {len(figures['wrong'])}"]
        lines += text_table.aligned(
            [
                ("photo", "truth", "verdict", "probability", "reason"),
                *(
                    (
                        wrong["path"],
                        TRUTH_NAMES[wrong["truth"]],
                        wrong["verdict"],
                        percent(wrong["probability"]),
                        wrong["reason"] or "",
                    )
                    for wrong in figures["wrong"]
                ),
            ]
        )
    return "\n".join(lines)


def class_rows(figures: dict[str, Any]) -> list[tuple[str, ...]]:
    """The per-class table, its header first."""
    rows: list[tuple[str, ...]] = [("class", "precision", "recall", "F1", "support")]
    for label in LABELS:
        entry = figures["classes"][label]
        rows.append((label, *(percent(entry[key]) for key in ("precision", "recall", "f1")), str(entry["support"])))
    return rows


def confusion_rows(figures: dict[str, Any]) -> list[tuple[str, ...]]:
    """The confusion matrix as a table: a row per truth, a column per verdict, its header first."""
    counts = figures["confusion_matrix"]
    return [
        ("truth \\ verdict", *LABELS),
        *((TRUTH_NAMES[truth], *(str(counts[truth][verdict]) for verdict in LABELS)) for truth in LABELS),
    ]


def font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Pillow's own font (its bitmap one where Pillow has no FreeType): no font file to find on the machine."""
    return ImageFont.load_default(size=size)


def mixed(colour: tuple[int, int, int], weight: float) -> tuple[int, int, int]:
    """colour at weight (0..1) over white."""
    r, g, b = (round(255 + (channel - 255) * weight) for channel in colour)
    return r, g, b


def confusion_picture(figures: dict[str, Any]) -> Image.Image:
    """The confusion matrix: a cell per (truth row, verdict column) holding its count, coloured by its share of the
    row (green on the diagonal, red off it, white for none, LEAST_TINT at least for any)."""
    counts = np.array([[figures["confusion_matrix"][truth][verdict] for verdict in LABELS] for truth in LABELS])
    size = len(LABELS)
    picture = Image.new("RGB", (LEFT + size * CELL + MARGIN, TOP + size * CELL + MARGIN), WHITE)
    draw = ImageDraw.Draw(picture)
    small, large = font(14), font(22)
    draw.text((LEFT + size * CELL / 2, 14), "verdict", font=small, fill=INK, anchor="mt")
    draw.text((14, TOP - 12), "truth", font=small, fill=INK, anchor="ls")
    for row, truth in enumerate(LABELS):
        total = counts[row].sum()
        top = TOP + row * CELL
        draw.text((LEFT - 10, top + CELL / 2), TRUTH_NAMES[truth], font=small, fill=INK, anchor="rm")
        for column, verdict in enumerate(LABELS):
            left = LEFT + column * CELL
            if row == 0:
                draw.text((left + CELL / 2, TOP - 12), verdict, font=small, fill=INK, anchor="ms")
            weight = counts[row, column] / total if total else 0.0
            tint = LEAST_TINT + (1 - LEAST_TINT) * weight if counts[row, column] else 0.0
            colour = mixed(RIGHT_COLOUR if row == column else WRONG_COLOUR, tint)
            draw.rectangle((left, top, left + CELL - 1, top + CELL - 1), fill=colour, outline=GRID)
            text = WHITE if tint > 0.5 else INK
            centre = (left + CELL / 2, top + CELL / 2)
            draw.text(centre, str(counts[row, column]), font=large, fill=text, anchor="md")
            draw.text((centre[0], centre[1] + 6), f"{weight:.0%}" if total else "", font=small, fill=text, anchor="mt")
    return picture


def plot_position(x: float, y: float) -> tuple[float, float]:
    """A point of the reliability plot (both 0..1) in the picture's pixels."""
    return PLOT_LEFT + x * PLOT, PLOT_TOP + (1 - y) * PLOT


def reliability_diagram(figures: dict[str, Any]) -> Image.Image:
    """Per calibration bin with photos, a bar as high as the share of them right, and a red line at their mean
    confidence (a calibrated model's bars reach their lines); the diagonal is where they would both be."""
    picture = Image.new("RGB", (PLOT_LEFT + PLOT + 2 * MARGIN, PLOT_TOP + PLOT + PLOT_BOTTOM), WHITE)
    draw = ImageDraw.Draw(picture)
    small = font(13)
    for step in range(11):
        value = step / 10
        (x, bottom), (left, y) = plot_position(value, 0), plot_position(0, value)
        draw.line((x, PLOT_TOP, x, bottom), fill=GRID)
        draw.line((left, y, left + PLOT, y), fill=GRID)
        if step % 2 == 0:
            draw.text((x, bottom + 6), f"{value:g}", font=small, fill=INK, anchor="mt")
            draw.text((left - 6, y), f"{value:g}", font=small, fill=INK, anchor="rm")
    draw.line((*plot_position(0, 0), *plot_position(1, 1)), fill=(150, 150, 150), width=2)
    for entry in figures["calibration"]:
        if not entry["photos"]:
            continue
        left, top = plot_position(entry["from"], entry["accuracy"])
        right, bottom = plot_position(entry["to"], 0)
        draw.rectangle((left + 2, top, right - 2, bottom), fill=BAR_COLOUR)
        _, level = plot_position(0, entry["confidence"])
        draw.line((left + 2, level, right - 2, level), fill=CONFIDENCE_COLOUR, width=3)
        draw.text(((left + right) / 2, min(top, level) - 4), str(entry["photos"]), font=small, fill=INK, anchor="ms")
    draw.rectangle((*plot_position(0, 1), *plot_position(1, 0)), outline=INK)
    ece = figures["expected_calibration_error"]
    title = "no verdict with a probability" if ece is None else f"expected calibration error {ece:.3f}"
    draw.text((PLOT_LEFT + PLOT / 2, 12), title, font=font(15), fill=INK, anchor="mt")
    x_axis = "probability of the verdict (photos not called neither)"
    draw.text((PLOT_LEFT + PLOT / 2, PLOT_TOP + PLOT + 30), x_axis, font=small, fill=INK, anchor="mt")
    draw.text((12, PLOT_TOP - 14), "share right", font=small, fill=INK, anchor="ls")
    legend = "bar: share right; red line: mean probability; number: photos"
    draw.text((PLOT_LEFT + PLOT / 2, PLOT_TOP + PLOT + 52), legend, font=small, fill=INK, anchor="mt")
    return picture


def data_uri(picture: Image.Image, image_format: str) -> str:
    buffer = io.BytesIO()
    picture.save(buffer, format=image_format, **({"quality": 85} if image_format == "JPEG" else {}))
    return f"data:image/{image_format.lower()};base64,{base64.b64encode(buffer.getvalue()).decode()}"


def gallery_picture(outcome: Outcome) -> Image.Image:
    """The wrong photo, read again and scaled to the gallery, with its heatmap overlaid when it has one."""
    picture = images.open_rgb(images.read_file(Path(outcome.path)), (GALLERY_SIDE, GALLERY_SIDE))
    if outcome.prediction.heatmap is not None:
        return heatmaps.overlay(picture, outcome.prediction.heatmap, longest_side=GALLERY_SIDE)
    picture.thumbnail((GALLERY_SIDE, GALLERY_SIDE), Image.Resampling.BILINEAR)
    return picture


def gallery_card(outcome: Outcome) -> str:
    prediction = outcome.prediction
    try:
        shown = f'<img alt="{html.escape(outcome.path)}" src="{data_uri(gallery_picture(outcome), "JPEG")}">'
    except (images.ImageError, OSError) as error:  # changed or gone since it was judged
        shown = f'<p class="unread">could not be read again: {html.escape(images.failure(error))}</p>'
    judged = percent(prediction.probability) if prediction.probability is not None else "no probability"
    lines = [
        f"<strong>{html.escape(outcome.path)}</strong>",
        f"{html.escape(TRUTH_NAMES[outcome.truth])}, called {html.escape(prediction.verdict)} "
        f"({judged}, evidence {percent(prediction.evidence)})",
    ]
    if prediction.reason:
        lines.append(html.escape(prediction.reason))
    if prediction.heatmap_class:
        lines.append(f"heatmap: where it looked for {html.escape(prediction.heatmap_class)}")
    return f"<figure>{shown}<figcaption>{'<br>'.join(lines)}</figcaption></figure>"


def html_table(rows: Sequence[Sequence[str]]) -> str:
    """A table whose first row is its header."""
    header, *body = rows
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    cells = ["".join(f"<td>{html.escape(cell)}</td>" for cell in row) for row in body]
    return f"<table><tr>{head}</tr>{''.join(f'<tr>{row}</tr>' for row in cells)}</table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #1e1e1e; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.3rem 0.8rem; text-align: left; }
.plots { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }
.plots img { max-width: 100%; height: auto; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(260px, 1fr)); gap: 1.2rem; }
figure { margin: 0; } figure img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.9rem; margin-top: 0.3rem; overflow-wrap: anywhere; }
"""
# Nothing but this file: its own pictures (data:) and its inline style.
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def page(figures: dict[str, Any], wrong: Sequence[Outcome]) -> str:
    """index.html: the figures, the confusion matrix and reliability pictures, and the wrong photos' gallery."""
    ece = figures["expected_calibration_error"]
    headline = [
        ("figure", "value", "what"),
        ("photos judged", str(figures["n"]), "in " + ", ".join(figures["folders"])),
        ("failed", str(figures["failed"]), "files that could not be read or decoded"),
        *rates(figures),
        (
            "expected calibration error",
            "n/a" if ece is None else f"{ece:.3f}",
            "of the probability of a verdict (photos not called neither), 10 bins",
        ),
    ]
    cards = "".join(gallery_card(outcome) for outcome in wrong) or "<p>None: every photo got its truth.</p>"
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>muffin-v-chihuahua evaluation</title>
<style>{STYLE}</style>
</head>
<body>
<h1>Muffin or chihuahua: how good it is on these photos</h1>
<p>Judged by {html.escape(figures["judged_by"])}.</p>
{html_table(headline)}
<h2>Per class</h2>
{html_table(class_rows(figures))}
<div class="plots">
<section><h2>Confusion matrix</h2>
<img alt="confusion matrix: truth in rows, verdict in columns" src="{data_uri(confusion_picture(figures), "PNG")}">
</section>
<section><h2>Reliability</h2>
<img alt="reliability diagram: share right against the probability" src="{data_uri(reliability_diagram(figures), "PNG")}">
</section>
</div>
<h2>Wrong photos ({len(figures["wrong"])})</h2>
<div class="gallery">{cards}</div>
</body>
</html>
"""


def write(folder: Path, figures: dict[str, Any], wrong: Sequence[Outcome]) -> None:
    """folder/index.html and folder/report.json (the figures, as evaluate --json prints them); folder is made if
    needed, and those two files replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text(page(figures, wrong), encoding="utf-8")
    (folder / "report.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
