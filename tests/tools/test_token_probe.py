"""The token-map probe runner (issue 35's diagnosis) at tiny size, and its table."""

import json

import pytest

from videotl.config import load_config
from videotl_tools.harness.demo import ensure_synthetic_charades
from videotl_tools.harness.token_probe import ProbeRow, render_probe_table, run_probe

from .test_demo import DEMO_CFG, TINY_DATASET, TINY_RUN


def test_probe_trains_under_its_change_measures_and_is_not_rerun(tmp_path):
    data = tmp_path / "data"
    ensure_synthetic_charades(str(data), progress=False, num_workers=0, **TINY_DATASET)
    overrides = [*TINY_RUN, "DATA.PATH_TO_DATA_DIR", str(data), "X3D.SPATIAL_STRIDES", "[2, 2, 1, 1]"]
    row = run_probe(DEMO_CFG, "finer", overrides, epochs=1, output_root=str(tmp_path / "probes"), dataset=TINY_DATASET)
    run_dir = tmp_path / "probes" / "finer"
    saved = load_config(str(run_dir / "config.yaml"))
    assert saved.SOLVER.MAX_EPOCH == 1 and list(saved.X3D.SPATIAL_STRIDES) == [2, 2, 1, 1]
    # A 32 px crop through the stem's 2 and strides 2, 2, 1, 1: 32 / 8 = 4 cells a side (1 by default).
    assert row.grid == [4, 4] and row.epochs == 1 and row.seed == saved.RNG_SEED
    assert row.median_motion_ratio >= 0 and -1 <= row.correlation <= 1 and row.border_ratio >= 0
    assert json.loads((run_dir / "probe_row.json").read_text())["normalised_gain"] == pytest.approx(row.normalised_gain)
    stamp = (run_dir / "probe_row.json").stat().st_mtime_ns
    assert run_probe(DEMO_CFG, "finer", overrides, epochs=1, output_root=str(tmp_path / "probes")) == row
    assert (run_dir / "probe_row.json").stat().st_mtime_ns == stamp


def test_probe_tool_prints_the_finished_probes_table(tmp_path, capsys):
    from videotl_tools import probe_tokens

    rows = [ProbeRow("baseline", [], 20, 0, 0.75, 1.16, 0.80, 0.93, [3, 3], 300.0)]
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / "probe_row.json").write_text(json.dumps(rows[0].__dict__))
    assert probe_tokens.main(["--table", "--output-root", str(tmp_path)]) == 0
    assert capsys.readouterr().out == render_probe_table(rows)
    with pytest.raises(SystemExit):
        probe_tokens.main([])  # neither a probe to run nor --table


def test_probe_table():
    rows = [
        ProbeRow("baseline", [], 20, 0, 0.7491, 1.158, 0.804, 0.93, [3, 3], 300.0),
        ProbeRow("no_conv2d", ["RES5.SPATIAL", "none"], 20, 0, 0.792, 1.34, 0.951, 1.02, [3, 3], 280.0),
    ]
    assert render_probe_table(rows) == (
        "| probe | change | epochs | grid | normalised gain | median token motion ratio | mean pairwise correlation "
        "| border ratio |\n"
        "|---|---|---:|---|---:|---:|---:|---:|\n"
        "| baseline | none | 20 | 3x3 | 0.749 | 1.16 | 0.80 | 0.93 |\n"
        "| no_conv2d | `RES5.SPATIAL none` | 20 | 3x3 | 0.792 | 1.34 | 0.95 | 1.02 |\n"
    )
