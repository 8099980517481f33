"""DATA.INPUT_DTYPE uint8: clips cross to the device as uint8 (a quarter of float32's bytes) and
are normalised there to exactly the values the loader's float32 path gives."""

import pytest
import torch

from videotl.data import build_loader
from videotl.data.transforms import EvalTransform, channels_first, normalize, normalize_batch
from videotl.engine.evaluator import prepare_inputs

MEAN, STD = (0.45, 0.40, 0.35), (0.225, 0.25, 0.2)


def test_normalising_a_uint8_batch_gives_the_loaders_values_bit_for_bit():
    clips = torch.randint(0, 256, (2, 5, 6, 7, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    on_device = normalize_batch(torch.stack([channels_first(c) for c in clips]), mean=MEAN, std=STD)
    in_loader = torch.stack([normalize(c, mean=MEAN, std=STD) for c in clips])
    assert on_device.dtype == torch.float32 and torch.equal(on_device, in_loader)
    # Against the formula by hand, channel by channel (within float32 rounding).
    by_hand = (
        clips.permute(0, 4, 1, 2, 3).double() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1, 1).double()
    ) / torch.tensor(STD).view(1, 3, 1, 1, 1).double()
    torch.testing.assert_close(on_device.double(), by_hand, rtol=0, atol=1e-5)


def test_an_eval_transform_that_leaves_normalising_writes_uint8_into_its_slot():
    clip = torch.randint(0, 256, (4, 40, 50, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    normalised = EvalTransform(crop_size=32, num_crops=1, mean=MEAN, std=STD)
    raw = EvalTransform(crop_size=32, num_crops=1, mean=MEAN, std=STD, normalise=False)
    slot = torch.empty((3, 4, 32, 32), dtype=torch.uint8)
    assert raw(clip, out=slot) is slot
    assert torch.equal(normalize_batch(slot[None], mean=MEAN, std=STD)[0], normalised(clip))


@pytest.mark.parametrize("mode", ["train", "segments"])
def test_uint8_batches_normalised_on_the_device_equal_the_float32_batches(charades_cfg, mode):
    overrides = ["DATA.DECODING_BACKEND", "pyav", *([] if mode == "train" else ["TEST.MODE", mode])]
    split = "train" if mode == "train" else "test"
    batches = {}
    for dtype in ("uint8", "float32"):
        cfg = charades_cfg(*overrides, "DATA.INPUT_DTYPE", dtype)
        loader = build_loader(cfg, split, mode)
        loader.set_epoch(0)
        torch.manual_seed(0)
        batch = next(iter(loader))
        assert batch["inputs"].dtype == getattr(torch, dtype)
        batches[dtype] = prepare_inputs(batch["inputs"], torch.device("cpu"), False, cfg)
    assert torch.equal(batches["uint8"], batches["float32"])


def test_auto_is_float32_on_the_cpu(charades_cfg):
    cfg = charades_cfg("DATA.DECODING_BACKEND", "pyav", "DEVICE", "cpu")
    assert next(iter(build_loader(cfg, "train", "train")))["inputs"].dtype == torch.float32
