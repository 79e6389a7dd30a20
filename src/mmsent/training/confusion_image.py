"""Confusion-matrix images, drawn with Pillow: the counts and the shares of each true class side by side,
each cell coloured on its panel's scale and labelled with its value, rows the true class, columns the
prediction. They go to TensorBoard every epoch and into the model dir and `evaluate`'s folder as PNGs.

matplotlib drew the same two panels in about 0.45 s a figure on a 2-core CPU (text layout and an extra
draw for tight_layout): with two figures an epoch and two more at the end, most of what a small run
spent outside training. Pillow draws one in a few milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mmsent.labels import TASKS

CELL_WIDTH, CELL_HEIGHT = 76, 44
SCALE_WIDTH = 14  # the colour scale beside each panel
GAP = 16
FONT_SIZE = 14
# Each panel's colour ramp, from its lowest to its highest value: the ends of matplotlib's Blues and Greens.
RAMPS = {"counts": ((247, 251, 255), (8, 48, 107)), "shares": ((247, 252, 245), (0, 68, 27))}


@dataclass(frozen=True)
class Panel:
    """One panel: its heading, each cell's text and its place on the panel's scale (0 to 1)."""

    heading: str
    kind: str  # counts or shares: which ramp
    texts: list[list[str]]
    levels: np.ndarray  # (n, n) in [0, 1]
    top: str  # the scale's highest value, as shown


def confusion_panels(matrix: list[list[int]]) -> list[Panel]:
    """The counts, and the counts over each true class (each row sums to 1: the recall on the diagonal)."""
    counts = np.asarray(matrix, dtype=np.int64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    top = max(int(counts.max()), 1)
    return [
        Panel("counts", "counts", [[f"{v:d}" for v in row] for row in counts], counts / top, f"{top}"),
        Panel("normalised by true class", "shares", [[f"{v:.2f}" for v in row] for row in shares], shares, "1.00"),
    ]


def confusion_image(task: str, matrix: list[list[int]], title: str = ""):
    """Both panels of `task`'s confusion matrix as an RGB PIL image, with `title` above them."""
    from PIL import Image, ImageDraw, ImageFont

    names = TASKS[task]
    n = len(names)
    font = ImageFont.load_default(size=FONT_SIZE)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def width(text: str) -> float:
        return measure.textlength(text, font=font)

    label_width = int(max(width(name) for name in [*names, "true"])) + GAP
    panel_width = label_width + n * CELL_WIDTH + GAP // 2 + SCALE_WIDTH + int(width("0000")) + GAP
    top = 2 * (FONT_SIZE + GAP)  # the title, then each panel's heading
    grid_height = n * CELL_HEIGHT
    image = Image.new("RGB", (2 * panel_width + GAP, top + grid_height + 2 * (FONT_SIZE + GAP // 2) + GAP), "white")
    draw = ImageDraw.Draw(image)
    title = title or f"{task} confusion matrix"
    draw.text(((image.width - width(title)) / 2, GAP // 2), title, fill="black", font=font)
    for index, panel in enumerate(confusion_panels(matrix)):
        left = index * (panel_width + GAP)
        grid_left = left + label_width
        low, high = (np.array(end, dtype=np.float64) for end in RAMPS[panel.kind])
        heading_x = grid_left + (n * CELL_WIDTH - width(panel.heading)) / 2
        draw.text((heading_x, top - FONT_SIZE - GAP // 2), panel.heading, fill="black", font=font)
        draw.text((left + GAP // 2, top - FONT_SIZE - 2), "true", fill="dimgray", font=font)
        for row, name in enumerate(names):
            y = top + row * CELL_HEIGHT
            draw.text((left + GAP // 2, y + (CELL_HEIGHT - FONT_SIZE) / 2), name, fill="black", font=font)
            for column in range(n):
                level = float(panel.levels[row, column])
                colour = tuple(int(c) for c in np.rint(low + (high - low) * level))
                x = grid_left + column * CELL_WIDTH
                draw.rectangle((x, y, x + CELL_WIDTH - 1, y + CELL_HEIGHT - 1), fill=colour)
                text = panel.texts[row][column]
                draw.text((x + (CELL_WIDTH - width(text)) / 2, y + (CELL_HEIGHT - FONT_SIZE) / 2), text,
                          fill="white" if level > 0.5 else "black", font=font)  # fmt: skip
        bottom = top + grid_height
        for column, name in enumerate(names):
            x = grid_left + column * CELL_WIDTH + (CELL_WIDTH - width(name)) / 2
            draw.text((x, bottom + GAP // 2), name, fill="black", font=font)
        predicted_x = grid_left + (n * CELL_WIDTH - width("predicted")) / 2
        draw.text((predicted_x, bottom + GAP // 2 + FONT_SIZE + GAP // 2), "predicted", fill="dimgray", font=font)
        # The colour scale: its highest value at the top, 0 at the bottom.
        scale_left = grid_left + n * CELL_WIDTH + GAP // 2
        for y in range(grid_height):
            colour = tuple(int(c) for c in np.rint(low + (high - low) * (1 - y / max(grid_height - 1, 1))))
            draw.line((scale_left, top + y, scale_left + SCALE_WIDTH - 1, top + y), fill=colour)
        draw.rectangle((scale_left, top, scale_left + SCALE_WIDTH - 1, bottom - 1), outline="gray")
        draw.text((scale_left + SCALE_WIDTH + 4, top), panel.top, fill="black", font=font)
        draw.text((scale_left + SCALE_WIDTH + 4, bottom - FONT_SIZE), "0", fill="black", font=font)
    return image


def save_confusion_pngs(folder, results: dict, title: str) -> None:
    """confusion_emotion.png and confusion_sentiment.png in `folder`, from summarized results."""
    for task in TASKS:
        confusion_image(task, results[task]["confusion_matrix"], f"{task}, {title}").save(Path(folder) / f"confusion_{task}.png")
