"""Images from a class-per-folder tree (ImageNet layout) for the ViT configs, as one-frame clips.

::

    DATA.PATH_TO_DATA_DIR/<split>/<class name>/<image>   (classes sorted by name, as ImageFolder)
      -> uint8 1 x H x W x 3
      -> train: Inception-style random resized crop (area 8-100 %, aspect 3/4-4/3) to
                TRAIN_CROP_SIZE, random flip       (ViT's fine-tuning augmentation)
         views: short side = TEST_CROP_SIZE, 1 centre crop or 3 crops along the long side
                (the video datasets' EvalTransform)
      -> normalised float 3 x 1 x H x W

Samples follow the video datasets' dict (``videotl.data.datasets.base``): ``"inputs"``,
``"label"``, ``"video_index"`` (the image's index), ``"view_index"`` (the crop), ``"valid"``,
so the loaders, the trainer and the view-aggregating evaluator take images unchanged; an
image is a "video" with ``num_views`` crops.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from .transforms import EvalTransform, horizontal_flip, normalize

__all__ = ["ImageFolderDataset", "InceptionCrop", "build_image_folder"]

logger = logging.getLogger("videotl.data")

MODES = ("train", "views")


class InceptionCrop:
    """Random resized crop (Szegedy et al.; torchvision's ``RandomResizedCrop``) on a
    ``T x H x W x 3`` uint8 clip, then an optional flip and normalisation."""

    def __init__(
        self,
        *,
        crop_size: int,
        random_flip: bool,
        mean: Sequence[float],
        std: Sequence[float],
        scale: Tuple[float, float] = (0.08, 1.0),
        ratio: Tuple[float, float] = (3 / 4, 4 / 3),
    ) -> None:
        self.crop_size = int(crop_size)
        self.random_flip = bool(random_flip)
        self.mean, self.std = tuple(mean), tuple(std)
        self.scale, self.ratio = scale, ratio

    def _box(self, height: int, width: int, generator: Optional[torch.Generator]) -> Tuple[int, int, int, int]:
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * float(torch.empty(()).uniform_(*self.scale, generator=generator))
            aspect = math.exp(float(torch.empty(()).uniform_(*log_ratio, generator=generator)))
            w = int(round(math.sqrt(target * aspect)))
            h = int(round(math.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = int(torch.randint(0, height - h + 1, (), generator=generator))
                left = int(torch.randint(0, width - w + 1, (), generator=generator))
                return top, left, h, w
        # Fallback as torchvision: the central crop at the nearest allowed aspect ratio.
        aspect = width / height
        if aspect < self.ratio[0]:
            w, h = width, int(round(width / self.ratio[0]))
        elif aspect > self.ratio[1]:
            h, w = height, int(round(height * self.ratio[1]))
        else:
            w, h = width, height
        return (height - h) // 2, (width - w) // 2, h, w

    def __call__(self, clip: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        from torchvision.transforms.v2 import functional as F

        top, left, h, w = self._box(clip.shape[1], clip.shape[2], generator)
        size = [self.crop_size, self.crop_size]
        clip = F.resized_crop(clip.permute(0, 3, 1, 2), top, left, h, w, size, antialias=True).permute(0, 2, 3, 1)
        if self.random_flip and bool(torch.rand((), generator=generator) < 0.5):
            clip = horizontal_flip(clip)
        return normalize(clip, mean=self.mean, std=self.std)


class ImageFolderDataset(Dataset):
    """Single-label images from ``root/<class>/<file>``; see the module docstring for the data flow.

    Args:
        root: the split's folder (one sub-folder per class).
        mode: ``"train"`` (one augmented crop per image) or ``"views"`` (``num_spatial_crops``
            test crops per image, in order).
        train_transform / test_transform: the crops of the two modes.
        num_classes: when given, the folder must hold exactly this many classes.

    Training crops draw from torch's global RNG, which the DataLoader seeds per worker.
    """

    def __init__(
        self,
        root: Path,
        *,
        mode: str,
        train_transform: InceptionCrop,
        test_transform: EvalTransform,
        num_classes: Optional[int] = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode = {mode!r}: images support {MODES} (no segments)")
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} not found (expected <root>/<split>/<class>/<image>)")
        # torchvision imports on use: importing it costs seconds, which every videotl process would pay.
        from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

        self.class_names, class_to_idx = find_classes(str(root))
        if num_classes is not None and len(self.class_names) != num_classes:
            raise ValueError(f"{root} has {len(self.class_names)} class folders but MODEL.NUM_CLASSES = {num_classes}")
        self.samples: List[Tuple[str, int]] = make_dataset(str(root), class_to_idx, extensions=IMG_EXTENSIONS)
        if not self.samples:
            raise FileNotFoundError(f"{root} holds no images ({', '.join(IMG_EXTENSIONS)})")
        self.root = root
        self.mode = mode
        self.train_transform = train_transform
        self.test_transform = test_transform
        self.num_classes = len(self.class_names)
        self.multi_label = False
        self.num_spatial_crops = test_transform.num_crops if mode == "views" else 1
        # Unreadable files seen so far (path -> reason), as the video datasets keep them.
        self.broken: Dict[str, str] = {}

    # The video datasets' evaluation interface: an image is a video of ``num_views`` crops.
    @property
    def num_videos(self) -> int:
        return len(self.samples)

    @property
    def video_ids(self) -> List[str]:
        return [str(Path(path).relative_to(self.root)) for path, _ in self.samples]

    def num_views(self, video_index: int) -> int:
        return self.num_spatial_crops

    def sample_range(self, video_index: int) -> range:
        return range(video_index * self.num_spatial_crops, (video_index + 1) * self.num_spatial_crops)

    def video_labels(self) -> torch.Tensor:
        return torch.tensor([label for _, label in self.samples], dtype=torch.int64)

    def release_cache(self) -> None:
        """Nothing is cached (present for the video datasets' loader interface)."""

    def __len__(self) -> int:
        return len(self.samples) * self.num_spatial_crops

    def _read(self, path: str) -> torch.Tensor:
        """uint8 1 x H x W x 3."""
        # PIL: torchvision's own image decoders are deprecated from 0.29 on.
        with Image.open(path) as image:
            return torch.from_numpy(np.asarray(image.convert("RGB")).copy()).unsqueeze(0)

    def __getitem__(self, index: int) -> dict:
        image_index, view = divmod(index, self.num_spatial_crops)
        path, label = self.samples[image_index]
        valid = True
        try:
            image = self._read(path)
        except (OSError, ValueError, Image.DecompressionBombError) as error:
            if self.mode == "train":
                raise RuntimeError(f"cannot decode training image {path}: {error}") from error
            # Evaluation keeps the image and reports it by name, as the video datasets do.
            self.broken[path] = str(error)
            logger.warning("unreadable image %s: %s", path, error)
            size = self.test_transform.crop_size
            image, valid = None, False
            inputs = torch.zeros(3, 1, size, size)
        if image is not None:
            if self.mode == "train":
                inputs = self.train_transform(image)
            else:
                inputs = self.test_transform(image, crop_index=view)
        return {
            "inputs": inputs,
            "label": torch.tensor(label, dtype=torch.int64),
            "video_index": image_index,
            "view_index": view,
            "valid": valid,
        }


def build_image_folder(cfg, split: str, mode: str) -> ImageFolderDataset:
    """``DATA.PATH_TO_DATA_DIR/<split>`` as an :class:`ImageFolderDataset` (``MODEL.NUM_CLASSES`` checked)."""
    data = cfg.DATA
    if not data.PATH_TO_DATA_DIR:
        raise FileNotFoundError("DATA.PATH_TO_DATA_DIR is empty: give the image root holding <split>/<class>/ folders")
    if cfg.DATA.MULTI_LABEL:
        raise ValueError("the image-folder dataset is single-label: set DATA.MULTI_LABEL False")
    return ImageFolderDataset(
        Path(data.PATH_TO_DATA_DIR) / split,
        mode=mode,
        train_transform=InceptionCrop(
            crop_size=data.TRAIN_CROP_SIZE, random_flip=data.RANDOM_FLIP, mean=data.MEAN, std=data.STD
        ),
        test_transform=EvalTransform(
            crop_size=data.TEST_CROP_SIZE, num_crops=cfg.TEST.NUM_SPATIAL_CROPS, mean=data.MEAN, std=data.STD
        ),
        num_classes=cfg.MODEL.NUM_CLASSES,
    )
