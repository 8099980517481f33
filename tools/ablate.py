#!/usr/bin/env python
"""Train and test the demo once per res5 variant under the same budget; write a Markdown table like
the paper's Table 11 (mAP, module and model GFLOPs, module parameters, training clips/s).

    python tools/ablate.py --cfg configs/demo/synthetic_charades.yaml \\
        --variants conv2d_tokenlearner conv2d_conv1d joint_mhsa --seeds 0 1 2 \\
        --out docs/ablation_synthetic.md

A variant is a file in configs/ablations/ (its RES5 / TOKENLEARNER keys). Runs go to
OUTPUT_ROOT/<variant> (OUTPUT_ROOT/<variant>/seed<k> with --seeds, one run per RNG_SEED, the
table giving mean and spread); a finished run is not rerun, an interrupted one resumes. Trailing
KEY VALUE pairs override the config for every variant (e.g. SOLVER.MAX_EPOCH 10).
"""

import os

# Set before torch loads OpenMP: idle threads sleep instead of spinning, which matters on two cores
# shared with the DataLoader workers (docs/synthetic_charades.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import platform  # noqa: E402
import shlex  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

from videotl.data.datasets.charades import load_charades  # noqa: E402
from videotl.utils.fileio import atomic_write_text  # noqa: E402
from videotl_tools._cli import add_config_arguments, config_from, make_parser, parse_args, run  # noqa: E402
from videotl_tools.harness.ablation import DEFAULT_VARIANTS, render_document, run_ablation  # noqa: E402
from videotl_tools.harness.demo import DEMO_CONFIG, DEMO_DATASET, ensure_synthetic_charades  # noqa: E402


def main(argv=None) -> int:
    parser = make_parser(__doc__)
    add_config_arguments(parser, default=DEMO_CONFIG)
    parser.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), help="names in configs/ablations/")
    parser.add_argument(
        "--seeds",
        nargs="+",
        type=int,
        default=None,
        help="train each variant once per RNG_SEED (default: the config's)",
    )
    parser.add_argument("--output-root", default="runs/ablation_synthetic", help="one run folder per variant")
    parser.add_argument("--out", default="docs/ablation_synthetic.md", help="the Markdown table")
    args = parse_args(parser, argv)

    def work():
        cfg = config_from(args)
        ensure_synthetic_charades(cfg.DATA.PATH_TO_DATA_DIR, **DEMO_DATASET)
        records, names = load_charades(Path(cfg.DATA.PATH_TO_DATA_DIR), cfg.TEST.SPLIT)
        chance = sum(len(r.labels) for r in records) / (len(records) * len(names))
        command = "python tools/ablate.py " + " ".join(
            shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:])
        )

        def write(rows):
            # Rewritten after every variant: an ablation cut short still shows its finished rows.
            loads = [r.load_average for r in rows if r.load_average > 0]
            load = (
                f"1-minute load average {min(loads):.1f}-{max(loads):.1f} at the end of each training"
                if loads
                else "load not recorded"
            )
            conditions = (
                f"{os.cpu_count()} CPU cores ({platform.machine()}) shared with other jobs ({load}), "
                f"{sum(r.train_seconds for r in rows):.0f} s of training ({sum(r.train_cpu_seconds for r in rows):.0f} "
                f"CPU s) for {len(rows)} of {len(args.variants) * len(args.seeds or [None])} runs; clips/s depend on "
                "that load and compare variants only roughly."
            )
            text = render_document(
                rows, cfg=cfg, command=command, chance=chance, num_test_videos=len(records), conditions=conditions
            )
            atomic_write_text(args.out, text)

        run_ablation(
            args.cfg_file,
            args.variants,
            output_root=args.output_root,
            overrides=args.opts,
            seeds=args.seeds,
            on_row=write,
        )
        print(open(args.out).read())

    return run(work)


if __name__ == "__main__":
    sys.exit(main())
