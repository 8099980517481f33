#!/usr/bin/env python
"""Print a model's layer table, parameter counts and one forward pass.

    python tools/model_info.py --cfg configs/charades_12fps.yaml [--input 16x128x128] [--depth 2] [KEY VALUE ...]
"""

import argparse
import time

import torch

from videotl.config import load_config
from videotl.models import build_model
from videotl.models.summary import format_table, summarize


def parse_input(text: str):
    frames, height, width = (int(v) for v in text.lower().split("x"))
    return frames, height, width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cfg", required=True, help="config file")
    parser.add_argument("--input", type=parse_input, default=None, help="T x H x W (default: DATA.NUM_FRAMES x DATA.TEST_CROP_SIZE^2)")
    parser.add_argument("--depth", type=int, default=2, help="module nesting depth shown in the table")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("overrides", nargs=argparse.REMAINDER, help="KEY VALUE config overrides")
    args = parser.parse_args()

    overrides = list(args.overrides)
    if args.input:
        # Token-axis layers (TokenFuser, MLP-Mixer) are built for the clip length: build for this one.
        overrides += ["DATA.NUM_FRAMES", str(args.input[0])]
    cfg = load_config(args.cfg, overrides)
    frames, height, width = args.input or (cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
    torch.manual_seed(cfg.RNG_SEED)
    model = build_model(cfg).eval()
    clip = torch.randn(args.batch, 3, frames, height, width)
    start = time.perf_counter()
    rows, logits = summarize(model, clip, depth=args.depth)
    seconds = time.perf_counter() - start

    print(format_table(rows))
    total = sum(p.numel() for p in model.parameters())
    print(f"\nmodel: {cfg.MODEL.ARCH}, {cfg.MODEL.NUM_CLASSES} classes, res5 {cfg.RES5.SPATIAL} + {cfg.RES5.TEMPORAL}")
    print(f"parameters: {total:,} ({total / 1e6:.2f} M)")
    print(f"forward: input {tuple(clip.shape)} -> logits {tuple(logits.shape)} in {seconds:.2f} s on CPU")
    print(f"logits[0, :5] = {[round(v, 4) for v in logits[0, :5].tolist()]}")


if __name__ == "__main__":
    main()
