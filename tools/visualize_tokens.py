#!/usr/bin/env python
"""Draw a TokenLearner module's spatial attention maps over a clip (the paper's Figure 10), or
measure whether the tokens look at what moves.

    python tools/visualize_tokens.py --checkpoint runs/demo/checkpoints/checkpoint_epoch_00010.pyth \
        --video VIDEO.mp4 [--tokens 0,1,2,3] [--start 2.0] [--module 0] --out DIR [--cfg FILE] [KEY VALUE ...]
    python tools/visualize_tokens.py --checkpoint CKPT --stats --video A.mp4 B.mp4 ... [--start 2.0]

The checkpoint carries its config; --cfg is for files that do not.

Drawing writes DIR/tokens_grid.png (frames in the first row, one row per token) and DIR/tokens.gif.
--stats prints, per TokenLearner module, each token's motion ratio (attention-weighted share of
moving pixels over their plain share; 1 = blind to motion) and the tokens' mean pairwise map
correlation (1 = identical tokens), over one clip per video: from --start, or centred in the video.
"""

import sys

from videotl.data import probe
from videotl.data.build import read_test_clip
from videotl.data.sampling import clip_span
from videotl.visualization import measure_token_maps, render_token_attention
from videotl_tools._cli import add_config_arguments, load_checkpoint_model, make_parser, parse_args, run


def _centred_start(cfg, path: str) -> float:
    span = clip_span(num_frames=cfg.DATA.NUM_FRAMES, fps=cfg.DATA.TARGET_FPS)
    return max(0.0, (probe(path).duration - span) / 2)


def _print_stats(model, cfg, videos, start) -> None:
    clips = (read_test_clip(cfg, path, _centred_start(cfg, path) if start is None else start) for path in videos)
    measured = measure_token_maps(model, clips, mean=cfg.DATA.MEAN, std=cfg.DATA.STD)
    if not measured:
        raise ValueError("the model has no TokenLearner-style module: there are no token maps to measure")
    for measures in measured:
        print(measures.summary())


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, default=None)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--video", required=True, nargs="+", help="one video to draw; one or more with --stats")
    parser.add_argument("--stats", action="store_true", help="print the token maps' measures instead of drawing")
    parser.add_argument("--tokens", default="0,1,2,3", help="comma-separated token indices (default 0,1,2,3)")
    parser.add_argument("--start", type=float, default=None, help="clip start in seconds (default 0; --stats: centred)")
    parser.add_argument("--module", type=int, default=0, help="which TokenLearner module, in execution order")
    parser.add_argument("--columns", type=int, default=8, help="frames shown in the grid")
    parser.add_argument("--out", help="folder of the pictures (required unless --stats)")
    args = parse_args(parser, argv)
    if not args.stats and (args.out is None or len(args.video) != 1):
        parser.error("drawing takes one --video and --out DIR (--stats measures several videos)")

    def work():
        model = load_checkpoint_model(args)
        cfg = model.videotl_config
        if args.stats:
            return _print_stats(model, cfg, args.video, args.start)
        start = args.start or 0.0
        written = render_token_attention(
            model,
            read_test_clip(cfg, args.video[0], start),
            out_dir=args.out,
            tokens=[int(t) for t in args.tokens.split(",") if t.strip()],
            mean=cfg.DATA.MEAN,
            std=cfg.DATA.STD,
            fps=cfg.DATA.TARGET_FPS,
            start_sec=start,
            module_index=args.module,
            num_columns=args.columns,
        )
        print(f"module {written['module']} ({args.module} of {written['num_modules']} TokenLearner modules)")
        print(f"wrote {written['grid']}\nwrote {written['animation']}")

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
