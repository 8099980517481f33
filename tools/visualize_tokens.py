#!/usr/bin/env python
"""Draw a TokenLearner module's spatial attention maps over a clip (the paper's Figure 10).

    python tools/visualize_tokens.py --checkpoint runs/demo/checkpoints/checkpoint_epoch_00010.pyth \
        --video VIDEO.mp4 [--tokens 0,1,2,3] [--start 2.0] [--module 0] --out DIR [--cfg FILE] [KEY VALUE ...]

The checkpoint carries its config; --cfg is for files that do not.

Writes DIR/tokens_grid.png (frames in the first row, one row per token) and DIR/tokens.gif.
"""

import sys

from videotl.data import read_clip
from videotl.data.build import build_transforms
from videotl.visualization import render_token_attention
from videotl_tools._cli import add_config_arguments, load_checkpoint_model, make_parser, parse_args, run


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, default=None)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--video", required=True)
    parser.add_argument("--tokens", default="0,1,2,3", help="comma-separated token indices (default 0,1,2,3)")
    parser.add_argument("--start", type=float, default=0.0, help="clip start in seconds")
    parser.add_argument("--module", type=int, default=0, help="which TokenLearner module, in execution order")
    parser.add_argument("--columns", type=int, default=8, help="frames shown in the grid")
    parser.add_argument("--out", required=True)
    args = parse_args(parser, argv)

    def work():
        tokens = [int(t) for t in args.tokens.split(",") if t.strip()]
        model = load_checkpoint_model(args)
        cfg = model.videotl_config
        clip = read_clip(
            args.video,
            args.start,
            num_frames=cfg.DATA.NUM_FRAMES,
            fps=cfg.DATA.TARGET_FPS,
            backend=cfg.DATA.DECODING_BACKEND,
            autorotate=cfg.DATA.AUTOROTATE,
        )
        _, test_transform = build_transforms(cfg)
        written = render_token_attention(
            model,
            test_transform(clip),
            out_dir=args.out,
            tokens=tokens,
            mean=cfg.DATA.MEAN,
            std=cfg.DATA.STD,
            fps=cfg.DATA.TARGET_FPS,
            start_sec=args.start,
            module_index=args.module,
            num_columns=args.columns,
        )
        print(f"module {written['module']} ({args.module} of {written['num_modules']} TokenLearner modules)")
        print(f"wrote {written['grid']}\nwrote {written['animation']}")

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
