"""Smoke test of the data benchmark on tiny videos (the real run is in docs/benchmarks.md)."""

import argparse
import json

import av
import pytest

from videotl.data import probe
from videotl.data.decoding import torchcodec_unavailable_reason
from videotl_tools.harness.data_benchmark import (
    add_data_arguments,
    bench_index,
    data_rows,
    long_video_worker,
    make_benchmark_video,
    make_long_video,
    render_markdown,
    run_data_benchmark,
    targets,
)

needs_torchcodec = pytest.mark.skipif(
    torchcodec_unavailable_reason() is not None, reason=str(torchcodec_unavailable_reason())
)


@needs_torchcodec
def test_benchmark_report_and_markdown(tmp_path):
    video = make_benchmark_video(tmp_path / "v.mp4", seconds=1.0, width=128, height=96, fps=30, gop=12)
    info = probe(video)
    assert (info.num_frames, info.width, info.height) == (30, 128, 96)
    result = run_data_benchmark(
        str(video),
        workdir=str(tmp_path / "work"),
        clips=2,
        segment_rounds=1,
        num_frames=8,
        long_lengths=(),
        transcode_clips=1,
        index_videos=0,
        decord_profile_clips=1,
        log=lambda line: None,
    )
    peers = result["peers"]
    assert set(peers["random_clips"]) == {
        "videotl decord",
        "videotl pyav",
        "videotl torchcodec",
        "torchcodec",
        "decord",
        "pyav",
    }
    assert peers["random_clips"]["torchcodec"]["vs_torchcodec_cpu"] == pytest.approx(1.0)
    assert peers["random_clips"]["torchcodec"]["median_vs_torchcodec_cpu"] == pytest.approx(1.0)
    assert peers["random_clips"]["videotl pyav"]["count"] == 2 and peers["segments_per_video"] == 2
    assert set(result["transcoded"]["rows"]) == {
        "decord size source",
        "pyav size source",
        "decord size 256",
        "pyav size 256",
    }
    # The targets read the default reader's row (PyAV), not the best of videotl's readers.
    assert [t["met"] for t in result["targets"]] == [
        peers[kind]["videotl pyav"]["median_vs_torchcodec_cpu"] >= 1.2
        for kind in ("random_clips", "segments", "resized_clips")
    ]
    assert all(t["measured"].startswith("videotl pyav:") for t in result["targets"])
    # The profile's stages add up to the reader's total; its references are all measured.
    profile = result["decord_profile"]["median_ms"]
    stages = [r for r in data_rows(result) if r["table"] == "decord_profile"]
    total = sum(profile[key] for key in ("open", "index", "get_batch", "to_torch", "close"))
    assert stages[6]["cpu_ms"] == pytest.approx(total) and sum(r.get("share", 0) for r in stages) == pytest.approx(
        1 + profile["resize"] / total
    )
    assert profile["wanted"] == 8 and all(profile[key] > 0 for key in ("ref_decode", "get_batch", "torchcodec_frames"))
    text = render_markdown(result)
    assert "decord reader spends its time" in text
    assert (
        text.startswith("## Data pipeline\n")
        and "**Targets** (this run)" in text
        and "| videotl pyav |" in text.replace("**", "")
    )
    json.dumps(result)


def test_long_video_worker_modes(tmp_path):
    video = make_long_video(tmp_path / "long.mp4", seconds=6.0, width=64, height=48)
    assert probe(video).num_frames == 180
    sequential = long_video_worker("sequential", str(video), "pyav")
    # 6 s at 12 fps = 72 times: two 64-frame segments.
    counts = [long_video_worker(mode, str(video), "pyav")["items"] for mode in ("segments", "list", "score")]
    assert sequential["items"] == 180 and counts == [2, 2, 2]
    assert sequential["peak_rss_mb"] > 0
    # One RGB frame per 12 fps time of the 6 s.
    assert long_video_worker("sequential_rgb", str(video), "pyav")["items"] == 72
    # Reference frames only: every I and P frame, and not the B-frames no other frame refers to.
    with av.open(str(video)) as container:
        kinds = [av.video.frame.PictureType(frame.pict_type).name for frame in container.decode(video=0)]
    references = long_video_worker("references", str(video), "pyav")["items"]
    assert kinds.count("I") + kinds.count("P") <= references < 180


def test_index_timing_cold_then_warm(tmp_path, monkeypatch):
    import videotl_tools.harness.data_benchmark as bench
    from videotl.data.decoding import probing

    probed = []
    real = probing.probe_file
    monkeypatch.setattr(probing, "probe_file", lambda path: probed.append(path) or real(path))

    def in_this_process(args, env=None):
        # What a fresh process sees: no probe results in memory, the given cache folder.
        monkeypatch.setattr(probing, "PROBE_CACHE", probing.ProbeCache())
        monkeypatch.setenv("VIDEOTL_CACHE_DIR", env["VIDEOTL_CACHE_DIR"])
        before = len(probed)
        result = bench.index_worker(args[1])
        result["probed"] = len(probed) - before
        return result

    monkeypatch.setattr(bench, "_in_fresh_process", in_this_process)
    result = bench_index(tmp_path, count=25, log=lambda line: None)
    assert result["cold"]["videos"] == result["warm"]["videos"] == 25 and result["warm"]["samples"] == 25
    assert (result["cold"]["probed"], result["warm"]["probed"]) == (25, 0)


def test_targets_read_the_measurements():
    def row(seconds, rss, ratio):
        return {
            "seconds": seconds,
            "score pyav": {"peak_rss_mb": rss, "vs_sequential_cpu": ratio, "vs_sequential_wall": ratio},
        }

    result = {"long_videos": [row(30, 400, 1.0), row(600, 410, 0.95), row(3600, 590, 0.89)]}
    assert [(t["met"], t["measured"].split(":")[-1].strip()) for t in targets(result)] == [
        (True, "1.48x"),  # 590 / 400
        (False, "0.89x CPU, 0.89x wall"),
    ]
    # With torchcodec's segments beside the default's: each against its own sequential decode.
    result["long_videos"][1]["segments pyav"] = {"vs_sequential_cpu": 0.9}
    result["long_videos"][1]["segments torchcodec"] = {"vs_sequential_cpu": 0.75}
    peer = [t for t in targets(result) if "torchcodec" in t["target"]]
    assert [(t["target"].split(":")[0], t["measured"], t["met"]) for t in peer] == [
        ("long video 10 min", "1.20x CPU", True)  # 0.9 / 0.75
    ]


@needs_torchcodec
def test_tool_writes_json_and_markdown(tmp_path):
    from videotl_tools import benchmark as module

    video = make_benchmark_video(tmp_path / "v.mp4", seconds=1.0, width=64, height=48, fps=25, gop=12)
    out, doc = tmp_path / "data.json", tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Data pipeline\n\nold\n\n## Model\n\nkept\n")
    assert "data" in module.BENCHMARKS
    argv = ["data", "--video", str(video), "--workdir", str(tmp_path / "w"), "--backend", "pyav", "torchcodec"]
    argv += ["--clips", "1", "--segment-rounds", "1", "--num-frames", "4", "--long", "--transcode-clips", "0"]
    argv += ["--index-videos", "0", "--output", str(out), "--markdown", str(doc)]
    assert module.main(argv) == 0
    result = json.loads(out.read_text())
    assert result["command"].startswith("python tools/benchmark.py data --video")
    assert set(result["peers"]["segments"]) == {"videotl pyav", "videotl torchcodec", "torchcodec", "decord", "pyav"}
    text = doc.read_text()
    assert "old" not in text and "## Model\n\nkept" in text and "python tools/benchmark.py data --video" in text


@pytest.mark.parametrize("value", ["0", "-2", "three"])
def test_long_rounds_must_be_a_positive_integer(value, capsys):
    parser = argparse.ArgumentParser(prog="benchmark.py data")
    add_data_arguments(parser)
    assert parser.parse_args(["--long-rounds", "2"]).long_rounds == 2
    with pytest.raises(SystemExit):
        parser.parse_args(["--long-rounds", value])
    assert f"argument --long-rounds: '{value}'" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--clips", "0"), ("--segment-rounds", "-1"), ("--fps", "0")])
def test_counts_and_rates_must_be_positive(flag, value, capsys):
    # Zero clips or rounds would end in a division by zero after minutes of measuring.
    parser = argparse.ArgumentParser(prog="benchmark.py data")
    add_data_arguments(parser)
    with pytest.raises(SystemExit):
        parser.parse_args([flag, value])
    assert f"argument {flag}: '{value}': must be positive" in capsys.readouterr().err


def test_skippable_counts_take_zero_but_not_less(capsys):
    # 0 skips the transcoded table or the index timing; a negative count ended in an IndexError
    # traceback after the other tables had been measured.
    parser = argparse.ArgumentParser(prog="benchmark.py data")
    add_data_arguments(parser)
    args = parser.parse_args(["--transcode-clips", "0", "--index-videos", "0", "--long"])
    assert (args.transcode_clips, args.index_videos, args.long) == (0, 0, [])
    for flag, value, message in [
        ("--transcode-clips", "-1", "'-1': must be 0 or more"),
        ("--index-videos", "-3", "'-3': must be 0 or more"),
        ("--long", "0", "'0': must be positive"),
    ]:
        with pytest.raises(SystemExit):
            parser.parse_args([flag, value])
        assert f"argument {flag}: {message}" in capsys.readouterr().err
