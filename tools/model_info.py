#!/usr/bin/env python
"""Print a model's layer table, parameter counts and one forward pass, or (--help-keys) every model
config key with its type, default, value in this config, allowed values and help.

python tools/model_info.py --cfg configs/charades_12fps.yaml [--input 16x128x128] [--depth 2] [KEY VALUE ...]
python tools/model_info.py --cfg configs/charades_12fps.yaml --help-keys
"""

import functools
import sys
import time

import torch

from videotl.config import describe_spec_keys
from videotl.models import build_model
from videotl.models.summary import format_table, summarize
from videotl_tools._cli import add_config_arguments, config_from, make_parser, parse_args, parse_shape, run


def _print_keys(cfg) -> None:
    """Two lines per key: ``KEY (type) = value  (default D)  allowed: A``, then its help, indented."""
    for info in describe_spec_keys():
        value = functools.reduce(lambda node, part: node[part], info.key.split("."), cfg)
        changed = "" if value == info.default else f"  (default {info.default!r})"
        allowed = f"  allowed: {info.allowed}" if info.allowed else ""
        print(f"{info.key} ({info.type}) = {value!r}{changed}{allowed}\n    {info.help}")


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, required=True)
    parser.add_argument(
        "--input", type=parse_shape, default=None, help="T x H x W (default: DATA.NUM_FRAMES x DATA.TEST_CROP_SIZE^2)"
    )
    parser.add_argument("--depth", type=int, default=2, help="module nesting depth shown in the table")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--help-keys", action="store_true", help="list the model's config keys and stop")
    args = parse_args(parser, argv)

    def work():
        if args.help_keys:
            return _print_keys(config_from(args))
        # Token-axis layers (TokenFuser, MLP-Mixer) are built for the clip length: build for this one.
        cfg = config_from(args, ["DATA.NUM_FRAMES", str(args.input[0])] if args.input else [])
        frames, height, width = args.input or (cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
        torch.manual_seed(cfg.RNG_SEED)
        model = build_model(cfg).eval()
        clip = torch.randn(args.batch, 3, frames, height, width)
        start = time.perf_counter()
        rows, logits = summarize(model, clip, depth=args.depth)
        seconds = time.perf_counter() - start
        print(format_table(rows))
        total = sum(p.numel() for p in model.parameters())
        print(
            f"\nmodel: {cfg.MODEL.ARCH}, {cfg.MODEL.NUM_CLASSES} classes, res5 {cfg.RES5.SPATIAL} + {cfg.RES5.TEMPORAL}"
        )
        print(f"parameters: {total:,} ({total / 1e6:.2f} M)")
        print(f"forward: input {tuple(clip.shape)} -> logits {tuple(logits.shape)} in {seconds:.2f} s on CPU")
        print(f"logits[0, :5] = {[round(v, 4) for v in logits[0, :5].tolist()]}")

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
