"""What every tool shares: ``--cfg FILE`` with ``KEY VALUE`` overrides, and one-line errors.

One convention for every tool: options (``--cfg``, ``--checkpoint``, ...) and ``KEY VALUE`` config
overrides may come in any order; overrides are positional pairs, e.g. ``DATA.PATH_TO_DATA_DIR
/data/charades OUTPUT_DIR runs/c12``. ``--cfg`` takes a file or the name of a config shipped with
videotl (``charades_12fps.yaml``).
"""

import argparse
import sys
from typing import Callable, List, Optional, Tuple

from fvcore.common.config import CfgNode

from videotl.config import ConfigError, load_config

__all__ = [
    "add_config_arguments",
    "config_from",
    "load_checkpoint_model",
    "make_parser",
    "parse",
    "parse_args",
    "parse_shape",
    "run",
]

OVERRIDES_HELP = (
    "Overrides are KEY VALUE pairs, e.g. DATA.PATH_TO_DATA_DIR /data/charades OUTPUT_DIR runs/c12; "
    "options may come before or after them. --cfg takes a file or a config shipped with videotl "
    "(e.g. charades_12fps.yaml)."
)


def make_parser(description: str) -> argparse.ArgumentParser:
    return argparse.ArgumentParser(
        description=description, epilog=OVERRIDES_HELP, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_config_arguments(parser: argparse.ArgumentParser, *, default: str = "", required: bool = False) -> None:
    parser.add_argument(
        "--cfg", dest="cfg_file", default=default, required=required, help="YAML config (may use _BASE_)"
    )
    parser.add_argument("opts", nargs="*", metavar="KEY VALUE", help="config overrides")


def parse_args(parser: argparse.ArgumentParser, argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Options and positional overrides intermixed, in any order."""
    return parser.parse_intermixed_args(argv)


def parse_shape(text: str) -> Tuple[int, ...]:
    """``"64x256x256"`` -> ``(64, 256, 256)``: the one parser of ``TxHxW`` (and full ``BxCxTxHxW``)
    shapes on the command line."""
    try:
        shape = tuple(int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 64x256x256") from None
    if not shape or min(shape) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: every size must be a positive integer")
    return shape


def config_from(args: argparse.Namespace, extra: List[str] = ()) -> CfgNode:
    return load_config(args.cfg_file or "", [*args.opts, *extra])


def load_checkpoint_model(args: argparse.Namespace):
    """The model of ``args.checkpoint`` for tools that run one: with ``--cfg`` (a model-only file,
    an old checkpoint) that config and the overrides, else the config stored in the checkpoint
    changed by the overrides. On the CPU; the caller moves it to ``model.videotl_config.DEVICE``."""
    from videotl.engine.distributed import resolve_device
    from videotl.engine.inference import load_model

    if args.cfg_file is None:
        model = load_model(args.checkpoint, overrides=args.opts, device="cpu")
    else:
        model = load_model(args.checkpoint, cfg=config_from(args), device="cpu")
    return model.to(resolve_device(model.videotl_config.DEVICE))


def parse(description: str, argv: Optional[List[str]] = None) -> CfgNode:
    """The config of a tool that takes nothing but ``--cfg`` and overrides (train, test)."""
    parser = make_parser(description)
    add_config_arguments(parser)
    return config_from(parse_args(parser, argv))


def run(main: Callable[[], Optional[int]]) -> int:
    """Run ``main``; expected failures (bad config, missing file, unusable checkpoint, diverged loss,
    a file system that refuses a write) end with one line instead of a traceback. Returns the exit
    status: ``main``'s own when it returns an int, else 0; 1 after an error."""
    from videotl.data import DatasetError, VideoDecodeError
    from videotl.engine import distributed as du
    from videotl.engine.checkpoint import CheckpointError
    from videotl.models.export import ExportError
    from videotl.registry import RegistryError

    try:
        status = main()
    except (
        ConfigError,
        DatasetError,
        VideoDecodeError,
        FloatingPointError,
        CheckpointError,
        RegistryError,
        ExportError,
    ) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        where = f"{error.filename}: " if getattr(error, "filename", None) else ""
        print(f"error: {where}{error.strerror or error}", file=sys.stderr)
        return 1
    finally:
        du.cleanup()
    return status if isinstance(status, int) and not isinstance(status, bool) else 0
