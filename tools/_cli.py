"""Shared argument parsing of the thin run tools: ``--cfg FILE`` followed by ``KEY VALUE`` overrides."""

import argparse
import sys
from pathlib import Path
from typing import Callable, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videotl.config import ConfigError, load_config  # noqa: E402


def parse(description: str, argv: Optional[List[str]] = None):
    parser = argparse.ArgumentParser(
        description=description,
        epilog="Overrides are KEY VALUE pairs, e.g. DATA.PATH_TO_DATA_DIR /data/charades OUTPUT_DIR runs/c12. "
               "Launch with torchrun for several processes or machines (see docs/training.md).",
    )
    parser.add_argument("--cfg", dest="cfg_file", default="", help="YAML config (may use _BASE_)")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="KEY VALUE overrides")
    args = parser.parse_args(argv)
    return load_config(args.cfg_file, args.opts)


def run(main: Callable[[], None]) -> int:
    """Run ``main``; expected failures (bad config, missing file, unusable checkpoint, diverged loss)
    end with one line instead of a traceback."""
    from videotl.data import DatasetError, VideoDecodeError
    from videotl.engine import distributed as du
    from videotl.engine.checkpoint import CheckpointError

    try:
        main()
    except (ConfigError, DatasetError, VideoDecodeError, FileNotFoundError, FloatingPointError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        du.cleanup()
    return 0
