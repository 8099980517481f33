"""Decoding in the main process (DATA.DECODE_DEVICE cuda, checked here on the CPU): the same
batches as the ordinary DataLoader path, broken videos skipped (train) or named (evaluation)."""

import logging

import pytest
import torch

from videotl.config import ConfigError
from videotl.data import build_dataset, build_loader
from videotl.data.decoding import VideoDecodeError
from videotl.data.device_decode import MainProcessDecoder, build_main_process_loader

from .conftest import TORCHCODEC_SKIP, assert_same_batches, decoded_epochs, fail_to_decode

pytestmark = pytest.mark.skipif(TORCHCODEC_SKIP is not None, reason=str(TORCHCODEC_SKIP))


def _cfg(charades_cfg, *overrides):
    # Jittered short side (40..48 of a 64x48 source) and a 32 crop: scale, crop and flip all vary.
    return charades_cfg("DATA.DECODING_BACKEND", "torchcodec", *overrides)


@pytest.mark.parametrize("workers", [0, 2])
def test_train_batches_equal_the_worker_path(charades_cfg, workers):
    cfg = _cfg(charades_cfg, "DATA_LOADER.NUM_WORKERS", str(workers))
    ordinary = decoded_epochs(build_loader(cfg, "train", "train"), seed=7)
    main = build_main_process_loader(cfg, "train", "train", device="cpu")
    assert isinstance(main.batches, MainProcessDecoder) and len(main) == len(ordinary[0])
    decoded = decoded_epochs(main, seed=7)
    for want, got in zip(ordinary, decoded):
        assert_same_batches(want, got)
    # The draws differ between epochs and seeds (the comparison is not between constant batches).
    assert not torch.equal(decoded[0][0]["inputs"], decoded[1][0]["inputs"]) or not torch.equal(
        decoded[0][0]["start_sec"], decoded[1][0]["start_sec"]
    )
    # BROKE (unprobeable) is skipped and counted the same way on both paths.
    skips = [int(b["skipped"].sum()) for epoch in decoded for b in epoch]
    assert skips == [int(b["skipped"].sum()) for epoch in ordinary for b in epoch] and sum(skips) >= 1


def test_views_batches_equal_the_worker_path(charades_cfg):
    cfg = _cfg(charades_cfg, "TEST.MODE", "views", "TEST.NUM_ENSEMBLE_VIEWS", "2", "TEST.NUM_SPATIAL_CROPS", "3")
    ordinary = list(build_loader(cfg, "test", "views"))
    decoded = list(build_main_process_loader(cfg, "test", "views", device="cpu"))
    assert_same_batches(ordinary, decoded)
    valid = torch.cat([b["valid"] for b in decoded])
    assert valid.tolist() == [True] * 12 + [False] * 6  # BROKE's 6 views are invalid, by name below


@pytest.mark.parametrize("workers", [0, 2])
def test_segment_batches_equal_the_worker_path(charades_cfg, workers):
    cfg = _cfg(charades_cfg, "DATA_LOADER.NUM_WORKERS", str(workers), "TEST.BATCH_SIZE_PER_DEVICE", "3")
    ordinary = list(build_loader(cfg, "test", "segments"))
    main = build_main_process_loader(cfg, "test", "segments", device="cpu")
    assert len(main) == len(ordinary)
    assert_same_batches(ordinary, list(main))


def test_a_clip_that_fails_to_decode_in_training_is_replaced_and_counted(charades_cfg, monkeypatch):
    fail_to_decode(monkeypatch, "AAA01.mp4")
    loader = build_main_process_loader(_cfg(charades_cfg), "train", "train", device="cpu")
    torch.manual_seed(0)
    skipped, videos = 0, []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        for batch in loader:
            assert batch["inputs"].shape[1:] == (3, 8, 32, 32)
            skipped += int(batch["skipped"].sum())
            videos += batch["video_index"].tolist()
    # AAA01 (probes fine, fails to decode) and BROKE (fails to probe) never make a sample.
    assert set(videos) == {1} and skipped >= 4
    broken = loader.dataset.broken
    assert any(p.endswith("AAA01.mp4") and r == "planted decode failure" for p, r in broken.items())
    assert any(p.endswith("BROKE.mp4") for p in broken)


def test_a_clip_that_fails_to_decode_in_evaluation_is_invalid_and_named(charades_cfg, monkeypatch):
    fail_to_decode(monkeypatch, "CCC03.mp4")
    cfg = _cfg(charades_cfg, "TEST.MODE", "views")
    loader = build_main_process_loader(cfg, "test", "views", device="cpu")
    batches = list(loader)
    valid = torch.cat([b["valid"] for b in batches]).tolist()
    index = torch.cat([b["video_index"] for b in batches]).tolist()
    assert list(zip(index, valid)) == [(0, True), (1, False), (2, False)]
    assert batches[0]["inputs"][1].abs().sum() == 0 and batches[0]["inputs"][0].abs().sum() > 0
    assert sorted(p.rsplit("/", 1)[-1] for p in loader.dataset.broken) == ["BROKE.mp4", "CCC03.mp4"]


def test_a_training_sample_that_exhausts_its_attempts_says_so(charades_cfg, monkeypatch):
    fail_to_decode(monkeypatch, "AAA01.mp4")
    fail_to_decode(monkeypatch, "BBB02.mp4")
    loader = build_main_process_loader(
        _cfg(charades_cfg, "DATA.MAX_SKIP_ATTEMPTS", "3"), "train", "train", device="cpu"
    )
    with pytest.raises(VideoDecodeError, match="replacement videos could not be decoded"):
        list(loader)


def test_cuda_decoding_needs_the_torchcodec_backend(charades_cfg):
    with pytest.raises(ConfigError) as raised:
        charades_cfg("DATA.DECODE_DEVICE", "cuda", "DATA.DECODING_BACKEND", "pyav")
    message = str(raised.value)
    assert "DATA.DECODE_DEVICE" in message and "DATA.DECODING_BACKEND" in message and "pyav" in message
    assert "\n" not in message


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback without CUDA")
def test_cuda_decoding_without_cuda_falls_back_to_the_cpu_with_one_line(charades_cfg, caplog):
    cfg = _cfg(charades_cfg, "DATA.DECODE_DEVICE", "cuda")
    with caplog.at_level(logging.WARNING, logger="videotl.data"):
        loader = build_loader(cfg, "train", "train")
    assert isinstance(loader.batches, MainProcessDecoder) and loader.device == torch.device("cpu")
    lines = [r.getMessage() for r in caplog.records if "DATA.DECODE_DEVICE" in r.getMessage()]
    assert len(lines) == 1 and "CUDA is not available" in lines[0]
    batch = next(iter(loader))
    assert batch["inputs"].shape[1:] == (3, 8, 32, 32) and batch["inputs"].device.type == "cpu"


def test_loader_look_alike_for_the_engine(charades_cfg):
    from videotl.engine.interrupt import shield_workers

    cfg = _cfg(charades_cfg, "DATA_LOADER.NUM_WORKERS", "2")
    loader = shield_workers(build_main_process_loader(cfg, "train", "train", device="cpu"))
    assert loader.num_workers == 2 and loader.workers.worker_init_fn is loader.worker_init_fn is not None
    dataset = build_dataset(_cfg(charades_cfg), "test", "segments")
    segments = build_main_process_loader(cfg, "test", "segments", device="cpu", dataset=dataset)
    assert segments.dataset is dataset and segments.num_workers == 0 and segments.sampler is None


class _CudaLooking(torch.Tensor):
    """A CPU tensor that reports itself as a CUDA tensor and notes the streams it is recorded on."""

    @property
    def is_cuda(self):
        return True

    def record_stream(self, stream):
        self.streams = getattr(self, "streams", []) + [stream]


def test_hand_over_records_every_nested_cuda_tensor_on_the_callers_stream(monkeypatch):
    class Stream:
        waited_for = []

        def wait_stream(self, other):
            self.waited_for.append(other)

    current, side = Stream(), Stream()
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current)

    def gpu(*shape):
        return torch.zeros(shape).as_subclass(_CudaLooking)

    batch = {
        "inputs": gpu(2, 3),
        "label": torch.zeros(2),  # a CPU tensor: nothing to record
        "views": [gpu(2), (gpu(1), {"crop": gpu(3)})],
        "meta": {"boxes": gpu(2, 4), "names": ["a", "b"]},
    }
    decoder = MainProcessDecoder(dataset=None, device="cuda", segments=object())
    assert decoder._hand_over(batch, side) is batch
    assert current.waited_for == [side]
    nested = [
        batch["inputs"],
        batch["views"][0],
        batch["views"][1][0],
        batch["views"][1][1]["crop"],
        batch["meta"]["boxes"],
    ]
    assert all(t.streams == [current] for t in nested)
    assert not hasattr(batch["label"], "streams")
