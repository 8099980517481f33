"""Subprocess entry for the engine tests: ``run_fake.py train|test|train_test KEY VALUE ...`` on the fakes.

Errors and interruptions end the way they do in tools/train_net.py (``videotl_tools._cli.run``):
one line on stderr and exit status 1, or 130 / 143 after SIGINT / SIGTERM.
"""

import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import fakes  # noqa: E402

from videotl.config import load_config  # noqa: E402
from videotl.engine import test, train  # noqa: E402
from videotl_tools._cli import run  # noqa: E402


def _count_compiled_graphs(path):
    """MODEL.COMPILE through a backend that records each graph dynamo hands it inside DDP's forward
    (then runs it as aot_eager does): one per gradient bucket when dynamo splits the graph at them.
    The count goes to ``path`` (one file per rank) at exit."""
    import atexit
    import functools

    from torch._dynamo.backends.registry import lookup_backend
    from torch.nn.parallel import DistributedDataParallel

    from videotl.engine import run as engine_run
    from videotl.engine import trainer

    graphs = []

    def counting(gm, example_inputs):
        # Graphs traced inside DDP's forward (training's), whole or as the pieces of a split.
        if DistributedDataParallel._get_active_ddp_module() is not None:
            graphs.append(len(gm.graph.nodes))
        return lookup_backend("aot_eager")(gm, example_inputs)

    engine_run.COMPILE_OPTIONS["backend"] = counting
    # Buckets of about 1 kB: the tiny network's convolution and its classifier fall in different ones
    # (DDP's first bucket, 1 MB by default, may not be larger than the rest under compile).
    torch.distributed._DEFAULT_FIRST_BUCKET_BYTES = 64
    trainer.DistributedDataParallel = functools.partial(DistributedDataParallel, bucket_cap_mb=0.0001)
    atexit.register(lambda: Path(path).with_suffix(f".rank{os.environ.get('RANK', '0')}").write_text(str(len(graphs))))


def main(command, overrides):
    cfg = load_config("", fakes.TINY + overrides)
    if command in ("train", "train_test"):
        summary = train(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)
        print(f"summary skipped_samples={summary['skipped_samples']} broken_videos={summary['broken_videos']}")
    if command in ("test", "train_test"):
        test(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)


if __name__ == "__main__":
    torch.set_num_threads(1)
    if os.environ.get("FAKE_COUNT_GRAPHS"):
        _count_compiled_graphs(os.environ["FAKE_COUNT_GRAPHS"])
    # Imports done, start when the test says so (FAKE_START_AFTER names a file it creates).
    gate = os.environ.get("FAKE_START_AFTER")
    while gate and not os.path.exists(gate):
        time.sleep(0.01)
    sys.exit(run(lambda: main(sys.argv[1], sys.argv[2:])))
