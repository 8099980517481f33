#!/usr/bin/env python
"""Total and per-module FLOPs and parameters of a configured model, in both conventions.

    python tools/profile_flops.py --cfg configs/charades_12fps.yaml [--input 64x256x256] [--batch 1]
        [--depth 3] [--module stages.3.6.middle] [--json OUT] [KEY VALUE ...]

GMACs are multiply-adds (what fvcore, X3D and PySlowFast call GFLOPs); GFLOPs are 2 x GMACs (what
the TokenLearner paper's tables use). ``--input`` is T x H x W for a video model (H x W for an image
model); with ``--module`` the input is the shape that module takes, written in full (1x432x64x8x8).
"""

import json
import sys

import torch

from videotl.models import build_model
from videotl.profiling import count_flops
from videotl.utils.fileio import atomic_write_text
from videotl_tools._cli import add_config_arguments, config_from, make_parser, parse_args, parse_shape, run


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, required=True)
    parser.add_argument(
        "--input", type=parse_shape, default=None, help="T x H x W (default: DATA.NUM_FRAMES x TEST_CROP_SIZE^2)"
    )
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument(
        "--module", default="", help="measure only this submodule (dotted name); --input is then its full input shape"
    )
    parser.add_argument("--depth", type=int, default=3, help="module nesting depth shown in the table")
    parser.add_argument("--json", default=None, help="write the totals and per-module counts here")
    args = parse_args(parser, argv)
    if args.module and not args.input:
        parser.error("--module needs --input with the module's full input shape")
    return run(lambda: _profile(args))


def _profile(args) -> int:

    overrides = list(args.opts)
    if args.input and not args.module and len(args.input) == 3:
        # Token-axis layers (TokenFuser, MLP-Mixer) are built for the clip length: build for this one.
        overrides += ["DATA.NUM_FRAMES", str(args.input[0])]
    cfg = config_from(args, overrides[len(args.opts) :])
    torch.manual_seed(cfg.RNG_SEED)
    model = build_model(cfg).eval()
    if args.module:
        model, shape = model.get_submodule(args.module), args.input
    else:
        size = args.input or (cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
        shape = (args.batch, 3, *size)

    report = count_flops(model, torch.randn(shape))
    print(f"{args.cfg_file}{' ' + args.module if args.module else ''}")
    print(report.format_summary())
    print(report.convention)
    print()
    print(report.format_table(depth=args.depth))
    print()
    print(report.format_skipped())
    if args.json:
        payload = {"config": args.cfg_file, "overrides": overrides, "module": args.module, **report.to_dict()}
        atomic_write_text(args.json, json.dumps(payload, indent=1))
        print(f"\nwrote {args.json}")
    return 1 if report.uncounted_matrix_ops else 0


if __name__ == "__main__":
    sys.exit(main())
