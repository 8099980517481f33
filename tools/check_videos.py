#!/usr/bin/env python
"""List the videos of a dataset that cannot be read, with the reason.

    python tools/check_videos.py --cfg configs/charades_12fps.yaml [--split test] [--full] [--output broken.tsv] [KEY VALUE ...]

Without --split, both the training split (TRAIN.DATASET / TRAIN.SPLIT) and the test split
(TEST.DATASET / TEST.SPLIT) are scanned. Each video is probed (every packet read) and its first
and last frames are decoded with DATA.DECODING_BACKEND; --full decodes every frame. Files that
read but carry timestamps some decoder gets wrong (no timestamps, edit lists, frames stored out
of presentation order, huge PTS, a decord or torchcodec frame index that disagrees with the
container's) are listed as notes: videotl reads them exactly (falling back to PyAV), other tools
may not. --output writes 'path<TAB>reason' lines of the unreadable ones. Exit status: 0 when
every video reads, 1 otherwise.
"""

import sys

from videotl.data import load_records
from videotl.data.check import check_videos
from videotl.utils.fileio import atomic_write_text
from videotl_tools._cli import add_config_arguments, config_from, make_parser, parse_args, run


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser)
    parser.add_argument("--split", default="", help="check only this split (of TEST.DATASET, or --dataset)")
    parser.add_argument("--dataset", default="", help="dataset name for --split (default TEST.DATASET)")
    parser.add_argument("--full", action="store_true", help="decode every frame, not only the first and last")
    parser.add_argument("--backend", default="", help="decoder (default DATA.DECODING_BACKEND)")
    parser.add_argument("--output", default="", help="write the unreadable videos here, 'path<TAB>reason' per line")
    args = parse_args(parser, argv)
    return run(lambda: _check(args))


def _check(args) -> int:
    cfg = config_from(args)

    if args.split:
        jobs = [(args.dataset or cfg.TEST.DATASET, args.split)]
    else:
        jobs = [(cfg.TRAIN.DATASET, cfg.TRAIN.SPLIT), (cfg.TEST.DATASET, cfg.TEST.SPLIT)]
    paths = []
    for dataset, split in dict.fromkeys(jobs):
        records, _ = load_records(cfg, split, dataset)
        print(f"{dataset} {split}: {len(records)} videos")
        paths.extend(str(r.path) for r in records)
    paths = list(dict.fromkeys(paths))

    found = check_videos(paths, backend=args.backend or cfg.DATA.DECODING_BACKEND, full=args.full, notes=True)
    problems = [p for p in found if p.severity == "error"]
    notes = [p for p in found if p.severity == "note"]
    for note in notes:
        print(f"note: {note.path}\t{note.reason}")
    for problem in problems:
        print(f"{problem.path}\t{problem.reason}")
    if notes:
        print(
            f"{len({n.path for n in notes})} videos read exactly but have timestamps some decoders get wrong (notes above)"
        )
    print(f"{len(problems)} of {len(paths)} videos cannot be read")
    if args.output:
        atomic_write_text(args.output, "".join(f"{p.path}\t{p.reason}\n" for p in problems))
        print(f"list written to {args.output}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
