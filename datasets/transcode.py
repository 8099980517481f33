#!/usr/bin/env python
"""Re-encode every video of a dataset for fast training reads (see videotl/data/transcode.py).

    python datasets/transcode.py --src data/charades/Charades_v1_480 --dst data/charades/Charades_v1_12fps \\
        --fps 12 --short-side 320 [--gop 12] [--crf 23] [--workers 2]

Outputs mirror the source tree (suffix .mp4): H.264 at --fps with a keyframe every --gop frames,
short side --short-side. Point DATA.VIDEO_DIR (or the CSV paths) at --dst; annotations stay as
they are: a clip read from an output holds the frames the same clip reads from the original.
Resumable (outputs already there and checked are skipped) and atomic (an interrupted file never
counts); each output's duration is checked against its source. The files that could not be
converted are listed at the end and in <dst>/transcode_failures.tsv. Exit status 1 if any.
"""

import argparse
import multiprocessing
import sys
from pathlib import Path

from tqdm import tqdm

from videotl.data.transcode import plan, transcode_job
from videotl.utils.fileio import atomic_write_text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="folder of source videos (searched recursively)")
    parser.add_argument("--dst", required=True, help="output folder (the same tree, .mp4 files)")
    parser.add_argument("--fps", type=float, default=12.0, help="output frame rate = DATA.TARGET_FPS")
    parser.add_argument("--short-side", type=int, default=320, help="output short side in pixels (0: keep)")
    parser.add_argument("--gop", type=int, default=12, help="frames between keyframes")
    parser.add_argument("--crf", type=int, default=23, help="x264 quality (lower = better, bigger)")
    parser.add_argument("--preset", default="veryfast", help="x264 speed preset")
    parser.add_argument("--workers", type=int, default=max(1, multiprocessing.cpu_count()), help="parallel encodes")
    args = parser.parse_args(argv)

    src, dst = Path(args.src), Path(args.dst)
    if not src.is_dir():
        print(f"error: {src}: no such folder", file=sys.stderr)
        return 2
    if args.fps <= 0 or args.gop <= 0 or args.short_side < 0:
        print("error: --fps and --gop must be positive, --short-side >= 0", file=sys.stderr)
        return 2
    try:
        pairs = plan(src, dst)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not pairs:
        print(f"error: {src}: no video files", file=sys.stderr)
        return 2
    options = dict(fps=args.fps, short_side=args.short_side, gop=args.gop, crf=args.crf, preset=args.preset)
    jobs = [(source, output, options) for source, output in pairs]
    results = []
    progress = tqdm(total=len(jobs), desc="transcoding", unit="video", dynamic_ncols=True)
    if args.workers > 1:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            for result in pool.imap_unordered(transcode_job, jobs):
                results.append(result)
                progress.update()
                progress.set_postfix(failed=sum(r.status == "failed" for r in results))
    else:
        for job in jobs:
            results.append(transcode_job(job))
            progress.update()
    progress.close()
    failed = sorted((r for r in results if r.status == "failed"), key=lambda r: r.source)
    done = sum(r.status == "done" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    for result in failed:
        print(f"{result.source}\t{result.reason}")
    print(f"{done} converted, {skipped} already there, {len(failed)} failed, of {len(results)} videos")
    failures = dst / "transcode_failures.tsv"
    if failed:
        atomic_write_text(failures, "".join(f"{r.source}\t{r.reason}\n" for r in failed))
        print(f"failures listed in {failures}")
    elif failures.exists():
        failures.unlink()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
