import importlib.util
from pathlib import Path

from videotl.data.check import check_video, check_videos

TOOL = Path(__file__).resolve().parents[2] / "tools" / "check_videos.py"


def _tool():
    from videotl_tools import check_videos

    return check_videos


def test_check_video_reasons(videos):
    assert check_video(videos["vfr"]) is None
    assert check_video(videos["30"], backend="pyav", full=True) is None
    assert "empty file" in check_video(videos["empty"]).reason
    assert "cannot open" in check_video(videos["text"], backend="pyav").reason
    problems = check_videos([videos["25"], videos["truncated"], videos["text"]], progress=False)
    assert [p.path for p in problems] == [str(videos["truncated"]), str(videos["text"])]
    # A truncated file whose index survives: its header promises 60 frames.
    problem = check_video(videos["truncated_faststart"], backend="pyav")
    assert problem is not None and "truncated: the header lists 60 frames" in problem.reason


def test_tool_lists_the_broken_videos(charades_root, tmp_path, capsys):
    out = tmp_path / "broken.tsv"
    status = _tool().main(["--output", str(out), "DATA.PATH_TO_DATA_DIR", str(charades_root), "MODEL.NUM_CLASSES", "5"])
    printed = capsys.readouterr().out
    assert status == 1
    assert "charades train: 3 videos" in printed and "charades test: 3 videos" in printed
    assert "1 of 4 videos cannot be read" in printed  # AAA01 and BROKE are in both splits
    lines = out.read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(str(charades_root / "Charades_v1_480" / "BROKE.mp4") + "\t")


def test_prepare_avid_writes_the_training_labels_as_class_list(tmp_path, capsys):
    import json

    spec = importlib.util.spec_from_file_location("prepare_avid", TOOL.parents[1] / "datasets" / "prepare_avid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    (tmp_path / "avid_train.json").write_text(
        json.dumps({"a.mp4": "zumba", "b.mp4": "none", "c.mp4": "", "d.mp4": "archery"})
    )
    (tmp_path / "avid_val.json").write_text(json.dumps({"e.mp4": "zumba", "f.mp4": "juggling", "g.mp4": "none"}))
    assert module.main(["--root", str(tmp_path)]) == 0
    assert (tmp_path / "avid_classes.txt").read_text() == "archery\nzumba\n"
    printed = capsys.readouterr().out
    assert "1 labelled 'none', 1 with an empty label" in printed and "1 with a name outside the class list" in printed


def test_tool_takes_options_after_the_overrides_and_reports_errors_in_one_line(charades_root, tmp_path, capsys):
    # The order datasets/DATASETS.md shows: overrides first, then --output and --split.
    out = tmp_path / "broken.tsv"
    overrides = ["DATA.PATH_TO_DATA_DIR", str(charades_root), "MODEL.NUM_CLASSES", "5"]
    assert _tool().main([*overrides, "--output", str(out), "--split", "test"]) == 1
    assert "charades test: 3 videos" in capsys.readouterr().out
    assert out.read_text().startswith(str(charades_root / "Charades_v1_480" / "BROKE.mp4") + "\t")

    for argv, expected in (
        ([*overrides, "DATA.TARGET_FPS", ".nan"], "error: DATA.TARGET_FPS: the command line gives nan"),
        (["DATA.PATH_TO_DATA_DIR", str(tmp_path / "nowhere"), "--split", "test"], str(tmp_path / "nowhere")),
        (["--cfg", str(tmp_path / "missing.yaml")], "missing.yaml"),
    ):
        assert _tool().main(argv) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ") and expected in err, err


def test_odd_timestamps_are_reported_as_notes(odd_videos, videos):
    from videotl.data.check import video_notes

    found = check_videos(
        [odd_videos["mpeg4_avi"][0], videos["30"], videos["text"], odd_videos["raw_h264"][0]],
        progress=False,
        notes=True,
    )
    notes = {(p.path.rsplit("/", 1)[1], p.severity) for p in found}
    assert ("mpeg4_bframes.avi", "note") in notes and ("raw.h264", "note") in notes and ("text.mp4", "error") in notes
    assert not any(p.path == str(videos["30"]) for p in found)  # a plain file has no notes
    assert any(
        "decord" in p.reason and "times frames by their packets" in p.reason
        for p in video_notes(odd_videos["mpeg4_avi"][0])
    )
