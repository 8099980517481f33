#!/usr/bin/env python
"""Export a trained model (TorchScript, torch.export or ONNX) and check the file against the eager model.

    python tools/export.py --checkpoint runs/c12/checkpoints/checkpoint_epoch_00050.pyth --format onnx \\
        [--out model.onnx] [--input 64x256x256] [--tolerance 1e-4] [--cfg FILE] [KEY VALUE ...]
    python tools/export.py --model x2plus1d_m_tokenlearner_charades --format export

The input is one test view (1 x 3 x DATA.NUM_FRAMES x TEST_CROP_SIZE^2, or the named model's
num_frames and test_crop_size) unless --input says otherwise. --model exports a registered model
(videotl.list_models()) with random weights, to check that it exports: its initial weights, with
the zero-initialised matrices (TokenFuser's token map, a zeroed head) drawn at random so that
every path reaches the output. The round trip runs the exported file (onnxruntime for ONNX) and
the eager model on the same random clip on the CPU; a difference above --tolerance is an error
(exit status 1).
"""

import sys
import time
from pathlib import Path

import torch

from videotl.config import ConfigError
from videotl.models.export import EXPORT_FORMATS, SUFFIXES, export_model, round_trip_error
from videotl_tools._cli import add_config_arguments, load_checkpoint_model, make_parser, parse_args, parse_shape, run


def _random_model(name: str) -> torch.nn.Module:
    import videotl

    torch.manual_seed(0)
    model = videotl.create_model(name)
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() >= 2 and not param.any():
                fan_in = param[0].numel()
                param.normal_(std=fan_in**-0.5)
    return model


def export(args) -> int:
    if args.model:
        if args.cfg_file or args.opts:
            raise ConfigError("--model builds the registered model as it is: no --cfg or KEY VALUE overrides")
        model = _random_model(args.model).eval()
        preset = model.default_cfg
        default_input = (preset["num_frames"], preset["test_crop_size"], preset["test_crop_size"])
        default_out = Path(args.model + SUFFIXES[args.format])
    else:
        model = load_checkpoint_model(args).cpu().eval()
        cfg = model.videotl_config
        default_input = (cfg.DATA.NUM_FRAMES, cfg.DATA.TEST_CROP_SIZE, cfg.DATA.TEST_CROP_SIZE)
        default_out = Path(args.checkpoint).with_suffix(SUFFIXES[args.format])
    frames, height, width = args.input or default_input
    torch.manual_seed(0)
    example = torch.randn(1, 3, frames, height, width)
    out = Path(args.out or default_out)
    start = time.perf_counter()
    export_model(model, example, out, format=args.format)
    exported = time.perf_counter()
    error = round_trip_error(model, out, example, format=args.format)
    checked = time.perf_counter()
    print(
        f"wrote {out} ({args.format}, input {tuple(example.shape)}, export {exported - start:.1f} s, "
        f"round trip {checked - exported:.1f} s); max |exported - eager| = {error:.3g}"
    )
    if error > args.tolerance:
        print(f"error: {out}: differs from the eager model by {error:.3g} > {args.tolerance:g}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, default=None)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a checkpoint written by videotl (its config rebuilds the model)")
    source.add_argument("--model", help="a registered model name instead, with random weights")
    parser.add_argument("--format", required=True, choices=EXPORT_FORMATS)
    parser.add_argument(
        "--out", default="", help="output file (default: the checkpoint's or model's name with the format's suffix)"
    )
    parser.add_argument("--input", type=parse_shape, default=None, help="T x H x W of the example clip")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest allowed max abs difference")
    args = parse_args(parser, argv)
    return run(lambda: export(args))


if __name__ == "__main__":
    sys.exit(main())
