"""Subprocess entry for the engine tests: ``run_fake.py train|test|train_test KEY VALUE ...`` on the fakes."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import fakes  # noqa: E402

from videotl.config import load_config  # noqa: E402
from videotl.engine import distributed as du  # noqa: E402
from videotl.engine import test, train  # noqa: E402

if __name__ == "__main__":
    torch.set_num_threads(1)
    command, overrides = sys.argv[1], sys.argv[2:]
    cfg = load_config("", fakes.TINY + overrides)
    try:
        if command in ("train", "train_test"):
            train(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)
        if command in ("test", "train_test"):
            test(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)
    finally:
        du.cleanup()
