import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from videotl.evaluation import (
    charades_map,
    evaluate_submission,
    read_charades_csv,
    read_submission,
    sklearn_map,
    write_submission,
)

ROOT = Path(__file__).resolve().parents[2]

CSV = """id,subject,scene,quality,relevance,verified,script,objects,descriptions,actions,length
AAAAA,s1,Kitchen,6,7,Yes,"A person, cooking.",food,"Cooks, then eats.",c000 0.00 5.00;c002 1.0 3.0,30.1
BBBBB,s2,Bedroom,6,7,Yes,Sleeps.,bed,Sleeps.,,31.0
CCCCC,s3,Garage,6,7,Yes,Fixes.,car,Fixes.,c001 2.00 9.50,29.5
DDDDD,s4,Hall,6,7,Yes,Walks.,door,Walks.,c002 0.0 4.0;c000 1.0 2.0,30.0
"""


def _write_csv(tmp_path):
    path = tmp_path / "Charades_v1_test.csv"
    path.write_text(CSV)
    return path


def test_read_csv(tmp_path):
    ids, labels = read_charades_csv(_write_csv(tmp_path), num_classes=3)
    assert ids == ["AAAAA", "BBBBB", "CCCCC", "DDDDD"]
    np.testing.assert_array_equal(labels, [[1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 0, 1]])


def test_round_trip_is_exact_and_skips_unscored(tmp_path):
    scores = np.array([[0.1 + 1e-17, 1 / 3, 2.5e-300], [-np.inf] * 3, [0.7, 0.2, 0.9]])
    count = write_submission(tmp_path / "sub.txt", video_ids=["A", "B", "C"], scores=scores)
    assert count == 2
    read = read_submission(tmp_path / "sub.txt", num_classes=3)
    assert set(read) == {"A", "C"}
    np.testing.assert_array_equal(read["A"], scores[0])


def test_reader_rejects_duplicates_and_wrong_counts(tmp_path):
    path = tmp_path / "sub.txt"
    path.write_text("A 0.1 0.2\nA 0.3 0.4\n")
    with pytest.raises(ValueError, match="second time"):
        read_submission(path, num_classes=2)
    path.write_text("A 0.1\n")
    with pytest.raises(ValueError, match=r"sub.txt:1: 1 scores"):
        read_submission(path, num_classes=2)
    with pytest.raises(FileNotFoundError, match="nothere.txt"):
        read_submission(tmp_path / "nothere.txt")


def test_file_evaluation_matches_in_memory(tmp_path):
    csv_path = _write_csv(tmp_path)
    ids, labels = read_charades_csv(csv_path, num_classes=3)
    scores = np.array([[0.9, 0.1, 0.2], [0.95, 0.9, 0.99], [0.3, 0.6, 0.5], [0.2, 0.4, 0.1]])
    # DDDDD left out of the file: it ranks last.
    write_submission(tmp_path / "sub.txt", video_ids=ids[:3], scores=scores[:3])
    result, missing = evaluate_submission(tmp_path / "sub.txt", csv_path, num_classes=3)
    assert missing == 1
    expected_scores = scores.copy()
    expected_scores[3] = -np.inf
    assert result.mean_ap == pytest.approx(charades_map(expected_scores, labels).mean_ap)
    # By hand (B has no action: an unscored negative, before D in file order). c0 order: A, C, B, D -> positives at 1 and 4: (1 + 2/4) / 2 = 0.75
    # c1 order: C(+), A, B, D -> 1.0 ; c2 order: C, A(+), B, D(+) -> (1/2 + 2/4) / 2 = 0.5
    assert result.per_class_ap == pytest.approx([0.75, 1.0, 0.5])
    variant, _ = evaluate_submission(tmp_path / "sub.txt", csv_path, num_classes=3, variant="sklearn")
    assert variant.mean_ap == pytest.approx(sklearn_map(expected_scores, labels).mean_ap)


def test_eval_charades_tool_prints_map_last(tmp_path, capsys):
    csv_path = _write_csv(tmp_path)
    write_submission(
        tmp_path / "sub.txt",
        video_ids=["AAAAA", "CCCCC", "DDDDD"],
        scores=np.array([[0.9, 0.1, 0.2], [0.3, 0.6, 0.5], [0.2, 0.4, 0.1]]),
    )
    tool = ROOT / "tools" / "eval_charades.py"
    out = subprocess.run(
        [sys.executable, str(tool), str(tmp_path / "sub.txt"), str(csv_path), "--num-classes", "3"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    # c0: A(+), C, D(+) -> (1 + 2/3) / 2; c1: C(+) first -> 1.0; c2: C, A(+), D(+) -> (1/2 + 2/3) / 2.
    expected = ((1 + 2 / 3) / 2 + 1.0 + (1 / 2 + 2 / 3) / 2) / 3
    last = out.strip().splitlines()[-1].split()
    assert last[0] == "mAP" and float(last[1]) == pytest.approx(expected, abs=1e-6)
    # The script ran as the README shows it; the failure needs no second interpreter.
    from videotl_tools import eval_charades

    assert eval_charades.main([str(tmp_path / "none.txt"), str(csv_path)]) != 0
    assert "none.txt" in capsys.readouterr().err
