import re

import numpy as np
import pytest

from mmsent.training.metrics import format_head_metrics, head_metrics
from mmsent.training.tracking import METRIC_DEFINITIONS, epoch_metrics, metric_line


def test_head_metrics_match_hand_computed_values():
    targets = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    predicted = np.array([0, 1, 1, 1, 2, 2, 0, 3])
    metrics = head_metrics("sentiment", targets[targets < 3], predicted[targets < 3])
    assert metrics["accuracy"] == pytest.approx(5 / 7)
    # class 0: P 1/2 R 1/2; class 1: P 2/3 R 1; class 2: P 1 R 2/3
    f1 = {0: 0.5, 1: 0.8, 2: 0.8}
    assert metrics["macro_f1"] == pytest.approx(sum(f1.values()) / 3)
    assert metrics["weighted_f1"] == pytest.approx((2 * 0.5 + 2 * 0.8 + 3 * 0.8) / 7)
    assert metrics["per_class"]["neutral"] == {"precision": pytest.approx(2 / 3), "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 2]]
    assert "neutral" in format_head_metrics("sentiment", metrics)


def test_every_epoch_metric_line_is_matched_by_the_exported_definitions():
    validation = {"loss": 1.25, **{t: {"accuracy": 0.5, "weighted_f1": 0.25, "macro_f1": 1e-5} for t in ("emotion", "sentiment")},
                  "without_text": {t: {"accuracy": 0.4, "weighted_f1": 0.125, "macro_f1": 0.1} for t in ("emotion", "sentiment")}}  # fmt: skip
    values = epoch_metrics(3, {"loss": 2.0}, validation)
    assert values["validation_without_text:emotion_weighted_f1"] == 0.125
    text_only = {name: value for name, value in validation.items() if name != "without_text"}
    assert "validation_without_text:emotion_weighted_f1" not in epoch_metrics(3, {"loss": 2.0}, text_only)
    line = "some log prefix " + metric_line(values)
    assert len(METRIC_DEFINITIONS) == len(values)
    for definition in METRIC_DEFINITIONS:
        match = re.search(definition["Regex"], line)
        assert match, definition
        assert float(match.group(1)) == pytest.approx(values[definition["Name"]], rel=1e-5)


def test_class_weights_come_from_label_counts():
    import torch

    from mmsent.training.loop import class_weight_tensor

    labels = [0] * 6 + [1] * 3 + [2] * 1  # class 3 absent
    balanced = class_weight_tensor(labels, 4, "balanced", torch.device("cpu"))
    # n / (classes present x count): 10 / (3 x 6), 10 / (3 x 3), 10 / (3 x 1); absent classes weigh 1.
    assert balanced.tolist() == pytest.approx([10 / 18, 10 / 9, 10 / 3, 1.0])
    assert class_weight_tensor(labels, 4, "sqrt", torch.device("cpu")).tolist() == pytest.approx(
        [(10 / 18) ** 0.5, (10 / 9) ** 0.5, (10 / 3) ** 0.5, 1.0])  # fmt: skip
    assert class_weight_tensor(labels, 4, "none", torch.device("cpu")) is None


def test_confusion_panels_show_counts_and_shares_of_the_true_class():
    from mmsent.training.confusion_image import confusion_panels

    counts, shares = confusion_panels([[3, 1, 0], [0, 2, 0], [1, 0, 1]])
    assert counts.texts[0] == ["3", "1", "0"] and counts.top == "3"
    assert shares.texts[0] == ["0.75", "0.25", "0.00"] and shares.top == "1.00"  # row 0 over its 4 items
    assert counts.levels[0, 0] == 1.0 and shares.levels[1, 1] == 1.0  # each panel on its own scale
    empty_counts, empty_shares = confusion_panels([[0, 0], [0, 0]])  # no items: zeros, not a division by zero
    assert empty_counts.texts == [["0", "0"], ["0", "0"]] and empty_shares.texts[0] == ["0.00", "0.00"]


def test_confusion_images_colour_each_cell_by_its_value_on_a_legible_canvas():
    from mmsent.training.confusion_image import CELL_HEIGHT, CELL_WIDTH, confusion_image

    small = confusion_image("sentiment", [[3, 1, 0], [0, 2, 0], [1, 0, 1]], "sentiment, validation, best epoch 4")
    large = confusion_image("emotion", [[5 if i == j else 0 for j in range(7)] for i in range(7)])
    assert small.mode == "RGB" and large.width > 7 * 2 * CELL_WIDTH and large.height > 7 * CELL_HEIGHT
    pixels = [tuple(p) for p in np.asarray(large).reshape(-1, 3)]
    cell = CELL_WIDTH * CELL_HEIGHT
    # The diagonal is full (each panel's darkest end), every other cell empty (its lightest), each cell's text
    # (white on dark, black on light) covering a small part of it.
    for colour, cells in (((8, 48, 107), 7), ((0, 68, 27), 7), ((247, 251, 255), 42), ((247, 252, 245), 42)):
        assert cells * cell * 0.8 < pixels.count(colour) < cells * cell * 1.2, colour


def test_training_curves_have_whole_epoch_ticks_and_mark_the_best_epoch():
    from mmsent.training.metrics import curves_figure

    history = [{"epoch": e, "train": {"loss": 1.0 / e}, "validation": {"loss": 1.1 / e, "emotion": {"weighted_f1": f},
                "sentiment": {"weighted_f1": f}}} for e, f in ((1, 0.3), (2, 0.5), (3, 0.4))]  # fmt: skip
    figure = curves_figure(history, best_epoch=2)
    figure.canvas.draw()
    for axes in figure.axes:
        ticks = [t for t in axes.get_xticks() if axes.get_xlim()[0] <= t <= axes.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        assert "best epoch (2)" in axes.get_legend_handles_labels()[1]
