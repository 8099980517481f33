"""One sample path (plan, decode, transform): from one seed, the batches of the ordinary loader
(DataLoader workers decode on the CPU) and of the main-process decoder are equal, a video that
probes but fails to decode and one that cannot be probed included."""

import pytest
import torch

from videotl.data import build_loader
from videotl.data.device_decode import build_main_process_loader

from .conftest import assert_same_batches, decoded_epochs, fail_to_decode


@pytest.mark.parametrize("workers", [0, 2])
def test_training_batches_from_one_seed_are_equal_on_both_paths(charades_cfg, monkeypatch, workers):
    # AAA01 probes but fails to decode, BROKE cannot be probed: both are replaced, the same way.
    fail_to_decode(monkeypatch, "AAA01.mp4")
    cfg = charades_cfg("DATA.DECODING_BACKEND", "pyav", "DATA_LOADER.NUM_WORKERS", str(workers))
    workers_decode = sum(decoded_epochs(build_loader(cfg, "train", "train"), seed=3), [])
    main_decodes = sum(decoded_epochs(build_main_process_loader(cfg, "train", "train", device="cpu"), seed=3), [])
    assert_same_batches(workers_decode, main_decodes)
    assert sum(int(b["skipped"].sum()) for b in main_decodes) >= 2
    assert {v for b in main_decodes for v in b["video_index"].tolist()} == {1}
    # The draws differ between samples: the comparison is not between constant batches.
    assert len(set(torch.cat([b["start_sec"] for b in main_decodes]).tolist())) > 1


def test_views_batches_are_equal_on_both_paths(charades_cfg, monkeypatch):
    fail_to_decode(monkeypatch, "CCC03.mp4")
    views = ["TEST.MODE", "views", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3"]
    cfg = charades_cfg("DATA.DECODING_BACKEND", "pyav", *views)
    workers_decode = list(build_loader(cfg, "test", "views"))
    main_decodes = list(build_main_process_loader(cfg, "test", "views", device="cpu"))
    assert_same_batches(workers_decode, main_decodes)
    assert torch.cat([b["valid"] for b in main_decodes]).tolist() == [True] * 6 + [False] * 12
