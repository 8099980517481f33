"""One sample path (plan, decode, transform): from one seed, the batches of the ordinary loader
(DataLoader workers decode on the CPU) and of the main-process decoder are equal, a video that
probes but fails to decode and one that cannot be probed included; and one loader type for
every mode and decode device."""

import pytest
import torch

from videotl.data import VideoDataset, VideoLoader, build_loader
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


@pytest.mark.parametrize("mode", ["train", "views", "segments"])
def test_one_loader_type_whatever_the_mode_and_the_decode_device(charades_cfg, mode):
    cfg = charades_cfg("DATA.DECODING_BACKEND", "pyav", *([] if mode == "train" else ["TEST.MODE", mode]))
    split = "train" if mode == "train" else "test"
    loaders = [build_loader(cfg, split, mode), build_main_process_loader(cfg, split, mode, device="cpu")]
    keys = []
    for loader in loaders:
        assert isinstance(loader, VideoLoader) and isinstance(loader.dataset, VideoDataset)
        assert loader.dataset.mode == mode and loader.num_workers == 0
        loader.set_epoch(1)
        batch = next(iter(loader))
        assert batch["inputs"].shape[1:] == (3, 8, 32, 32) and batch["inputs"].device == loader.device
        keys.append(list(batch))
    assert keys[0] == keys[1] and {"inputs", "label", "video_index", "view_index", "valid"} <= set(keys[0])


def test_a_dataset_needs_a_sampling_strategy(charades_cfg):
    from videotl.data.clip_reader import ClipReader

    with pytest.raises(ValueError, match="strategy is a str: needs RandomClip, MultiViewClips or WholeVideoSegments"):
        VideoDataset([], ["a"], strategy="train", reader=ClipReader(), multi_label=False)
