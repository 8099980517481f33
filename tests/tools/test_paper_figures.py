"""The compute-table row specs, their measurement and the markdown they render (tiny inputs)."""

from pathlib import Path

import pytest
import torch

from videotl.profiling.flops import FlopReport, ModuleCount
from videotl_tools.harness import paper_figures
from videotl_tools.harness.paper_figures import FigureRow, RowResult, measure_row, render_markdown

REPO = Path(__file__).resolve().parents[2]


def test_every_row_names_an_existing_config_and_known_notes():
    for row in paper_figures.all_rows():
        assert not row.config or (REPO / row.config).is_file(), row
        assert all(key in paper_figures.NOTES for key in row.notes), row
        assert row.config or row.notes, f"{row.label}: a row without a config must say why"


def test_module_rows_measure_the_res5_middle_from_the_config():
    row = FigureRow("T", "Conv2D + Conv1D", "configs/ablations/conv2d_conv1d.yaml", input_shape=(1, 432, 4, 2, 2),
                    submodule="stages.3.6.middle", paper_gflops=1.0)  # fmt: skip
    result = measure_row(row)
    positions = 4 * 2 * 2
    # full 1x3x3 and 3x1x1 convs at 432 channels: 12 x 432^2 multiply-adds per position
    assert result.report.by_operator["conv"] * 1e9 == pytest.approx(12 * 432 * 432 * positions)
    assert result.report.params == 12 * 432 * 432 + 2 * 2 * 432  # two convs and two BatchNorms
    assert result.gflops_ratio == pytest.approx(result.gflops / 1.0)


def _result(row: FigureRow, gmacs: float, params: int) -> RowResult:
    report = FlopReport(input_shapes=[list(row.input_shape)], total=ModuleCount(macs=gmacs * 1e9, params=params),
                        modules={}, by_operator={}, skipped_ops={})  # fmt: skip
    return RowResult(row=row, report=report)


def test_markdown_gives_paper_ours_ratio_and_flags_unexplained_gaps():
    close = FigureRow("Table X", "close", "c.yaml", paper_gflops=10.0, paper_params_m=1.0)
    explained = FigureRow("Table X", "explained", "e.yaml", paper_gflops=10.0, paper_params_m=1.0, notes=("mlp_mixer",))
    unexplained = FigureRow("Table Y", "unexplained", "u.yaml", paper_gflops=10.0, paper_params_m=1.0)
    missing = FigureRow("Table Y", "not built", "", paper_gflops=19.2, notes=("three_ops",))
    results = [_result(close, 5.1, 1_020_000), _result(explained, 8.0, 1_000_000), _result(unexplained, 4.0, 1_000_000),
               RowResult(missing, None)]  # fmt: skip
    text = render_markdown(results, command="python tools/compute_table.py --out x.md")
    assert "python tools/compute_table.py --out x.md" in text
    assert "## Table X" in text and "## Table Y" in text
    close_line = next(line for line in text.splitlines() if line.startswith("| close |"))
    assert "| 10.0 | 10.20 | 5.10 | 1.02 |" in close_line  # paper, ours (2 x 5.1), GMACs, ratio within 5%
    assert "**1.60** | 1.00M | 1.000M | 1.00 | [1]" in text
    assert "**unexplained**" in text and "## Unexplained differences" in text
    assert paper_figures.NOTES["mlp_mixer"] in text
    assert results[1].off and not results[0].off


def test_rows_can_be_registered_by_another_module(monkeypatch):
    monkeypatch.setattr(paper_figures, "FIGURE_ROWS", list(paper_figures.FIGURE_ROWS))
    monkeypatch.setattr(paper_figures, "NOTES", dict(paper_figures.NOTES))
    row = FigureRow(
        "Table 1", "ViT-B/16", "configs/vit.yaml", input_shape=(1, 3, 224, 224), paper_gflops=55.6, notes=("vit",)
    )
    paper_figures.register_rows([row])
    paper_figures.register_notes({"vit": "image model note"})
    assert paper_figures.all_rows()[-1] is row
    text = render_markdown([_result(row, 17.5, 86_000_000)], command="cmd")
    assert "image model note" in text and "1x3x224x224 (whole model)" in text


def test_count_is_independent_of_weights():
    # The figures must not depend on the random init: counts are shapes only.
    row = FigureRow(
        "T",
        "TL",
        "configs/ablations/tokenlearner.yaml",
        ("DATA.NUM_FRAMES", "4"),
        (1, 432, 4, 2, 2),
        "stages.3.6.middle",
    )
    torch.manual_seed(1)
    first = measure_row(row).report.macs
    torch.manual_seed(2)
    assert measure_row(row).report.macs == first
