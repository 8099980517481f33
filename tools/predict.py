#!/usr/bin/env python
"""Predict whole videos segment by segment (the evaluation code path) and draw their timelines.

    python tools/predict.py --checkpoint runs/demo/checkpoints/checkpoint_epoch_00010.pyth \\
        --video VIDEO [VIDEO ...] [--top-k 5] [--annotations test] [--out DIR] [--cfg FILE] [KEY VALUE ...]

The checkpoint carries its config and class names; --cfg is for files that do not (model-only
weights, older checkpoints). KEY VALUE pairs change the config (e.g. DEVICE cpu).

Prints the top-k classes of each video, writes DIR/predictions.json and DIR/<video>_timeline.png.
--annotations SPLIT draws the ground-truth intervals of the configured dataset's SPLIT (e.g. test)
for the videos it lists. A file that cannot be read is reported in one line; the others still run.
When none can be read, that one line says so, nothing is written and the exit status is 1.
"""

import sys
from pathlib import Path

from videotl.data import load_records
from videotl.engine.inference import predict_videos, save_predictions
from videotl_tools._cli import add_config_arguments, load_checkpoint_model, make_parser, parse_args, run


def predict(args) -> int:
    model = load_checkpoint_model(args)
    cfg = model.videotl_config
    device = next(model.parameters()).device
    class_names = model.class_names
    ground_truth = {}
    if args.annotations:
        records, names = load_records(cfg, args.annotations, cfg.TEST.DATASET)
        class_names = names if len(names) == len(class_names) else class_names
        by_path = {r.path.resolve(): r.intervals for r in records}
        ground_truth = {v: by_path[Path(v).resolve()] for v in args.video if Path(v).resolve() in by_path}

    predictions = predict_videos(model, args.video, cfg=cfg, class_names=class_names, device=device)
    failed = [p for p in predictions if p.error]
    if len(failed) == len(predictions):
        # Nothing was predicted: no predictions.json that would read like a result.
        reasons = "; ".join(f"{p.video}: {p.error}" for p in failed)
        print(f"error: no video could be read, nothing predicted ({reasons})", file=sys.stderr)
        return 1
    out = args.out or str(Path(cfg.OUTPUT_DIR) / "predictions")
    written = save_predictions(
        predictions, class_names=class_names, out_dir=out, top_k=args.top_k, ground_truth=ground_truth
    )
    for prediction in predictions:
        if prediction.error:
            print(f"warning: {prediction.video} could not be read, not predicted: {prediction.error}", file=sys.stderr)
            continue
        top = ", ".join(f"{class_names[c]} {prediction.scores[c]:.3f}" for c in prediction.top_k(args.top_k))
        print(f"{prediction.video} ({len(prediction.segment_ranges)} segments): {top}")
        print(f"  timeline: {written['timelines'][prediction.video]}")
    print(f"wrote {written['json']}")
    return 0


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, default=None)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--video", nargs="+", required=True, help="video files to predict")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--annotations", default="", help="split of the configured dataset with ground truth")
    parser.add_argument("--out", default="", help="output folder (default OUTPUT_DIR/predictions)")
    args = parse_args(parser, argv)
    return run(lambda: predict(args))


if __name__ == "__main__":
    sys.exit(main())
