"""What every tool shares: ``--cfg FILE`` with ``KEY VALUE`` overrides, and one-line errors.

One convention for every tool: options (``--cfg``, ``--checkpoint``, ...) and ``KEY VALUE`` config
overrides may come in any order; overrides are positional pairs, e.g. ``DATA.PATH_TO_DATA_DIR
/data/charades OUTPUT_DIR runs/c12``. ``--cfg`` takes a file or the name of a config shipped with
videotl (``charades_12fps.yaml``).
"""

import argparse
import re
import sys
from typing import Callable, List, Optional, Tuple

from fvcore.common.config import CfgNode

from videotl.config import ConfigError, load_config
from videotl.utils.fileio import WriteError

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


def _bounded(text: str, kind: type, what: str, *, zero_allowed: bool = False):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if not (value >= 0 if zero_allowed else value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: must be {'0 or more' if zero_allowed else 'positive'}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    return _bounded(text, int, "an integer")


def non_negative_int(text: str) -> int:
    """argparse type: an integer of at least 0 (for counts where 0 means "skip")."""
    return _bounded(text, int, "an integer", zero_allowed=True)


def positive_float(text: str) -> float:
    """argparse type: a number above 0."""
    return _bounded(text, float, "a number")


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


# PyTorch re-raises an error of a DataLoader worker in the main process as "Caught NAME in DataLoader
# worker process N.\nOriginal Traceback ...", ending with the traceback's "module.NAME: message" line.
_WORKER_ERROR = re.compile(r"\ACaught (\w+) in DataLoader worker process \d+\.\nOriginal Traceback")
# Subclasses of the expected errors, as a worker's traceback names them.
_SUBCLASSES = ("WriteError", "FileNotFoundError", "PermissionError", "IsADirectoryError", "NotADirectoryError")


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and not isinstance(error, WriteError) and error.strerror:
        where = f"{error.filename}: " if error.filename else ""
        return f"{where}{error.strerror}"
    return str(error)


def worker_error_line(error: BaseException, names: Tuple[str, ...]) -> Optional[str]:
    """The one-line message of an error of one of the classes ``names`` raised in a DataLoader
    worker (what the same error says in the main process), or None for anything else."""
    text = str(error)
    match = _WORKER_ERROR.match(text)
    if match is None or match.group(1) not in names:
        return None
    last = text.rstrip().splitlines()[-1]
    prefix = re.match(rf"\A[\w.]*\b{match.group(1)}: ", last)
    return last[prefix.end() :] if prefix else None


def run(main: Callable[[], Optional[int]]) -> int:
    """Run ``main``; expected failures (bad config, missing file, unusable checkpoint, diverged loss,
    a file system that refuses a write, another run holding OUTPUT_DIR) end with one line instead
    of a traceback, and so do the same errors raised in a DataLoader worker. Returns the exit
    status: ``main``'s own when it returns an int, else 0; 1 after an error; 130 / 143 after
    SIGINT / SIGTERM (the shell's 128 + signal number)."""
    from videotl.data import DatasetError, VideoDecodeError
    from videotl.engine import distributed as du
    from videotl.engine.checkpoint import CheckpointError
    from videotl.engine.interrupt import RunInterrupted
    from videotl.engine.output_dir import RunLockError
    from videotl.models.export import ExportError
    from videotl.registry import RegistryError

    expected = (
        ConfigError,
        DatasetError,
        VideoDecodeError,
        FloatingPointError,
        CheckpointError,
        RegistryError,
        ExportError,
        RunLockError,
        OSError,
    )
    try:
        status = main()
    except RunInterrupted as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as error:
        # A worker's error arrives as its traceback in one message (and as a RuntimeError when
        # its class cannot be rebuilt from a string): give the line it would print here.
        line = worker_error_line(error, tuple(kind.__name__ for kind in expected) + _SUBCLASSES)
        if line is None and isinstance(error, expected):
            line = _one_line(error)
        if line is None:
            raise
        print(f"error: {line}", file=sys.stderr)
        return 1
    finally:
        du.cleanup()
    return status if isinstance(status, int) and not isinstance(status, bool) else 0
