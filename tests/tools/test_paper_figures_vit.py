"""The ViT / ViViT compute rows: registered with the table tool, and the layer-wise count equals
the count of the whole model."""

import dataclasses
from pathlib import Path

import pytest

from videotl_tools.harness.paper_figures import all_rows, measure_row
from videotl_tools.harness.paper_figures_vit import NOTES, ROWS, measure_row_by_layers

TINY = (
    "VIT.HIDDEN_SIZE",
    "32",
    "VIT.NUM_HEADS",
    "4",
    "VIT.MLP_DIM",
    "64",
    "VIT.PATCH_SIZE",
    "8",
    "DATA.NUM_FRAMES",
    "4",
    "DATA.TRAIN_CROP_SIZE",
    "32",
    "DATA.TRAIN_JITTER_SCALES",
    "[32, 32]",
)


def test_rows_are_registered_with_configs_and_notes():
    registered = all_rows()
    assert all(row in registered for row in ROWS)
    root = Path(__file__).resolve().parents[2]
    for row in ROWS:
        assert (root / row.config).is_file(), row.config
        assert all(key in NOTES for key in row.notes), row.label
    tables = {row.table.split(":")[0] for row in ROWS}
    assert {"Table 1", "Table 2", "Table 6"} <= tables


@pytest.mark.parametrize(
    "label",
    [
        "ViT B/16 (printed: 55.6)",
        "L/16 (24+11), 16-TL at 12 (printed: 186.8)",
        "B/16, 16-TL at 6, TokenFuser (printed: 29.1)",
        "TokenLearner 16at18 w. Fuser (L/10) (printed: 4100)",
    ],
)
def test_layerwise_count_equals_the_whole_model_count(label):
    row = next(r for r in ROWS if r.label == label)
    video = len(row.input_shape) == 5
    tiny = dataclasses.replace(row, overrides=TINY, input_shape=(1, 3, 4, 32, 32) if video else (1, 3, 32, 32))
    whole, layerwise = measure_row(tiny), measure_row_by_layers(tiny)
    assert layerwise.report.gmacs == pytest.approx(whole.report.gmacs, rel=1e-9)
    assert layerwise.report.params == whole.report.params
