"""The image-folder dataset: ImageFolder's class order, the video sample dict, crops and views."""

import pytest
import torch
from PIL import Image

from videotl.config import load_config
from videotl.data.image_folder import ImageFolderDataset, InceptionCrop, build_image_folder
from videotl.data.transforms import EvalTransform as ClipEvalTransform


def _tree(root, classes=("cat", "ant", "bee"), per_class=2, size=(40, 30)):
    for c, name in enumerate(classes):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            # Constant colour per image: the class and image are readable back from the pixels.
            Image.new("RGB", size, (40 * c, 10 * i, 200)).save(folder / f"{i}.png")
    return root


def _config(root, *overrides):
    return load_config(
        "configs/vit/vit_b16.yaml",
        [
            "DATA.PATH_TO_DATA_DIR",
            str(root),
            "MODEL.NUM_CLASSES",
            "3",
            "DATA.TRAIN_CROP_SIZE",
            "16",
            "DATA.TRAIN_JITTER_SCALES",
            "[16, 16]",
            "DATA.TEST_CROP_SIZE",
            "16",
            *overrides,
        ],
    )


def test_samples_follow_the_video_dict_and_sorted_classes(tmp_path):
    cfg = _config(_tree(tmp_path))
    data = build_image_folder(cfg, "train", "train")
    assert data.class_names == ["ant", "bee", "cat"]
    assert len(data) == 6 and data.num_videos == 6
    sample = data[0]
    assert set(sample) >= {"inputs", "label", "video_index", "view_index", "valid"}
    assert sample["inputs"].shape == (3, 1, 16, 16) and sample["inputs"].dtype == torch.float32
    assert sample["label"].dtype == torch.int64 and int(sample["label"]) == 0
    assert sample["valid"] is True and sample["view_index"] == 0
    # "ant" images are class index 1 in the folder list: red channel 40 -> (40/255 - 0.5) / 0.5.
    red = sample["inputs"][0].mean().item()
    assert red == pytest.approx((40 / 255 - 0.5) / 0.5, abs=1e-2)
    assert data.video_labels().tolist() == [0, 0, 1, 1, 2, 2]


def test_views_give_three_crops_per_image_in_order(tmp_path):
    cfg = _config(_tree(tmp_path), "TEST.NUM_SPATIAL_CROPS", "3")
    data = build_image_folder(cfg, "train", "views")
    assert len(data) == 18 and data.num_views(2) == 3 and list(data.sample_range(2)) == [6, 7, 8]
    assert [data[i]["view_index"] for i in range(3)] == [0, 1, 2]
    assert data[7]["video_index"] == 2


def test_inception_crop_keeps_size_and_unreadable_test_images_are_invalid(tmp_path):
    root = _tree(tmp_path)
    (root / "train" / "ant" / "broken.png").write_bytes(b"not a png")
    crop = InceptionCrop(crop_size=24, random_flip=True, mean=(0.5,) * 3, std=(0.5,) * 3)
    clip = torch.randint(0, 255, (1, 30, 40, 3), dtype=torch.uint8)
    assert crop(clip, generator=torch.Generator().manual_seed(0)).shape == (3, 1, 24, 24)
    views = ImageFolderDataset(
        root / "train",
        mode="views",
        train_transform=crop,
        test_transform=ClipEvalTransform(crop_size=16, num_crops=1, mean=(0.5,) * 3, std=(0.5,) * 3),
    )
    broken = [i for i, (path, _) in enumerate(views.samples) if path.endswith("broken.png")][0]
    sample = views[broken]
    assert sample["valid"] is False and sample["inputs"].shape == (3, 1, 16, 16)
    train = ImageFolderDataset(root / "train", mode="train", train_transform=crop, test_transform=views.test_transform)
    with pytest.raises(RuntimeError, match="broken.png"):
        train[broken]


def test_wrong_class_count_and_missing_root_are_named(tmp_path):
    with pytest.raises(ValueError, match="3 class folders"):
        build_image_folder(_config(_tree(tmp_path), "MODEL.NUM_CLASSES", "5"), "train", "train")
    with pytest.raises(FileNotFoundError, match="val"):
        build_image_folder(_config(tmp_path), "val", "views")


def test_build_dataset_and_loader_take_image_folders(tmp_path):
    from videotl.data import build_dataset, build_loader

    cfg = _config(_tree(tmp_path), "TEST.BATCH_SIZE_PER_DEVICE", "4", "DATA_LOADER.NUM_WORKERS", "0", "DEVICE", "cpu")
    assert isinstance(build_dataset(cfg, "train", "train"), ImageFolderDataset)
    batches = list(build_loader(cfg, "train", "views"))
    assert sum(len(b["video_index"]) for b in batches) == 6
    assert batches[0]["inputs"].shape == (4, 3, 1, 16, 16)
    assert torch.cat([b["label"] for b in batches]).tolist() == [0, 0, 1, 1, 2, 2]
