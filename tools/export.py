#!/usr/bin/env python
"""Export a trained model (TorchScript, torch.export or ONNX) and check the file against the eager model.

    python tools/export.py --checkpoint runs/c12/checkpoints/checkpoint_epoch_00050.pyth --format onnx \\
        [--out model.onnx] [--input 64x256x256] [--tolerance 1e-4] [--cfg FILE] [KEY VALUE ...]

The input is one test view (1 x 3 x DATA.NUM_FRAMES x TEST_CROP_SIZE^2) unless --input says
otherwise. The round trip runs the exported file (onnxruntime for ONNX) and the eager model on the
same random clip on the CPU; a difference above --tolerance is an error (exit status 1).
"""

import sys
from pathlib import Path

import torch

from videotl.models.export import EXPORT_FORMATS, SUFFIXES, export_model, round_trip_error
from videotl_tools._cli import add_config_arguments, load_checkpoint_model, make_parser, parse_args, parse_shape, run


def export(args) -> int:
    model = load_checkpoint_model(args).cpu().eval()
    cfg = model.videotl_config
    frames, height, width = args.input or (cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
    torch.manual_seed(0)
    example = torch.randn(1, 3, frames, height, width)
    out = Path(args.out or Path(args.checkpoint).with_suffix(SUFFIXES[args.format]))
    export_model(model, example, out, format=args.format)
    error = round_trip_error(model, out, example, format=args.format)
    print(f"wrote {out} ({args.format}, input {tuple(example.shape)}); max |exported - eager| = {error:.3g}")
    if error > args.tolerance:
        print(f"error: {out}: differs from the eager model by {error:.3g} > {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, default=None)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument(
        "--out", default="", help="output file (default: the checkpoint's name with the format's suffix)"
    )
    parser.add_argument("--input", type=parse_shape, default=None, help="T x H x W of the example clip")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed max abs difference")
    args = parse_args(parser, argv)
    return run(lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
