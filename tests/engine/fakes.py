"""An in-memory dataset with the data package's contract, a tiny model, and a loader builder.

Used by the engine tests in-process and by ``run_fake.py`` in subprocesses (kill-and-resume,
torchrun). Inputs are a deterministic function of (video, view); training clips add noise drawn
from the global torch RNG, so resuming must restore the generator states to match exactly.
"""

import os
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from videotl.data import VideoLoader

NUM_VIDEOS = {"train": 12, "test": 7}


class FakeVideoDataset(Dataset):
    def __init__(self, *, split, mode, num_classes, num_frames, size, multi_label, views=1, crops=1, failed=()):
        self.split, self.mode = split, mode
        self.num_classes, self.num_frames, self.size = num_classes, num_frames, size
        self.multi_label = multi_label
        self.views, self.crops = views, crops
        self.failed = set(failed)
        count = NUM_VIDEOS[split]
        self.video_ids = [f"{split.upper()}{i:03d}" for i in range(count)]
        self.class_names = [f"action number {c}" for c in range(num_classes)]
        self.broken = {}  # nothing here is unreadable
        # Segments mode: videos of different lengths, 1 to 3 segments.
        self._segments = [1 + (i % 3) for i in range(count)]
        self._samples = []
        for video in range(count):
            for view in range(self.num_views(video)):
                self._samples.append((video, view))
        self.sleep = float(os.environ.get("FAKE_SLEEP", "0"))

    def num_views(self, video_index):
        if self.mode == "segments":
            return self._segments[video_index]
        if self.mode == "views":
            return self.views * self.crops
        return 1

    def video_labels(self):
        if self.multi_label:
            labels = torch.zeros(len(self.video_ids), self.num_classes)
            for i in range(len(self.video_ids)):
                labels[i, i % self.num_classes] = 1
                if i % 2:
                    labels[i, (i * 3 + 1) % self.num_classes] = 1
            # The last test video has no action, as some Charades test videos.
            if self.split == "test":
                labels[-1] = 0
            return labels
        return torch.tensor([i % self.num_classes for i in range(len(self.video_ids))], dtype=torch.int64)

    def __len__(self):
        return len(self._samples)

    def __getitem__(self, index):
        video, view = self._samples[index]
        if self.sleep:
            time.sleep(self.sleep)
        generator = torch.Generator().manual_seed(1000 * video + view)
        inputs = torch.randn(3, self.num_frames, self.size, self.size, generator=generator)
        labels = self.video_labels()[video]
        # Make the classes learnable: shift channel 0 by the first label.
        first = int(labels.argmax()) if self.multi_label else int(labels)
        inputs[0] += first / self.num_classes
        if self.mode == "train":
            # Noise from the global RNG (a resume must restore it), and a per-sample scale and
            # offset so that BatchNorm statistics differ a lot between DDP ranks' batches.
            inputs = inputs * (1 + 2 * (index % 3)) + (index % 5) + 0.1 * torch.randn(inputs.shape)
        valid = video not in self.failed
        if not valid:
            inputs = torch.zeros_like(inputs)
        return {"inputs": inputs, "label": labels, "video_index": video, "view_index": view, "valid": valid}


class ShardSampler(Sampler):
    """Rank r takes samples r, r + W, r + 2W, ...: no padding, no duplicate."""

    def __init__(self, length, rank, world_size):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


FAILED_VIDEOS = []


def build_loader(cfg, split, mode, *, distributed=False):
    dataset = FakeVideoDataset(
        split=split,
        mode=mode,
        num_classes=cfg.MODEL.NUM_CLASSES,
        num_frames=cfg.DATA.NUM_FRAMES,
        size=cfg.DATA.TRAIN_CROP_SIZE if mode == "train" else cfg.DATA.TEST_CROP_SIZE,
        multi_label=cfg.DATA.MULTI_LABEL,
        views=cfg.TEST.NUM_ENSEMBLE_VIEWS,
        crops=cfg.TEST.NUM_SPATIAL_CROPS,
        failed=FAILED_VIDEOS if mode != "train" else (),
    )
    workers = cfg.DATA_LOADER.NUM_WORKERS
    if mode == "train":
        sampler = (
            DistributedSampler(dataset, shuffle=True, seed=cfg.RNG_SEED) if distributed else RandomSampler(dataset)
        )
        return VideoLoader.of(
            DataLoader(
                dataset,
                batch_size=cfg.TRAIN.BATCH_SIZE_PER_DEVICE,
                sampler=sampler,
                drop_last=True,
                num_workers=workers,
            )
        )
    rank = torch.distributed.get_rank() if distributed else 0
    world = torch.distributed.get_world_size() if distributed else 1
    return VideoLoader.of(
        DataLoader(
            dataset,
            batch_size=cfg.TEST.BATCH_SIZE_PER_DEVICE,
            sampler=ShardSampler(len(dataset), rank, world),
            num_workers=workers,
        )
    )


class TinyVideoNet(nn.Module):
    def __init__(self, num_classes, width=4):
        super().__init__()
        self.conv = nn.Conv3d(3, width, 3, padding=1, bias=False)
        self.norm = nn.BatchNorm3d(width)
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(0.3)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.pool(torch.relu(self.norm(self.conv(x)))).flatten(1)
        return self.fc(self.dropout(x))


def build_model(cfg):
    return TinyVideoNet(cfg.MODEL.NUM_CLASSES)


# Overrides that make the default config tiny and CPU-only.
TINY = [
    "DEVICE",
    "cpu",
    "MODEL.NUM_CLASSES",
    "5",
    "DATA.NUM_FRAMES",
    "4",
    "DATA.TRAIN_JITTER_SCALES",
    "[8, 8]",
    "DATA.TRAIN_CROP_SIZE",
    "8",
    "DATA.TEST_CROP_SIZE",
    "8",
    "DATA_LOADER.NUM_WORKERS",
    "0",
    "TRAIN.BATCH_SIZE_PER_DEVICE",
    "2",
    "TEST.BATCH_SIZE_PER_DEVICE",
    "3",
    "SOLVER.BASE_LR_PER_DEVICE",
    "0.1",
    "SOLVER.MAX_EPOCH",
    "2",
    "SOLVER.WARMUP_EPOCHS",
    "0.5",
    "TRAIN.DETERMINISTIC",
    "True",
    "TENSORBOARD.ENABLE",
    "False",
    "LOG_PERIOD",
    "2",
]


# The kill, interrupt and resume tests' run (``run_fake.py train``): 4 epochs of 6 iterations with
# two loader workers, a checkpoint and an evaluation after each, so resuming must restore the
# loader's seeds, the sampler order, dropout and the optimizer.
CHECKPOINTED_RUN = [
    "SOLVER.MAX_EPOCH",
    "4",
    "TRAIN.CHECKPOINT_PERIOD",
    "1",
    "TRAIN.EVAL_PERIOD",
    "1",
    "DATA_LOADER.NUM_WORKERS",
    "2",
]


def subprocess_env(sleep=0.0):
    """Environment of a ``run_fake.py`` process: one thread, ``sleep`` seconds per sample, no DDP."""
    env = dict(os.environ, OMP_NUM_THREADS="1", FAKE_SLEEP=str(sleep))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(key, None)
    return env


# Set in a DataLoader worker by mark_worker: shows that a loader's own worker_init_fn still runs.
WORKER_MARK = 0


def mark_worker(worker_id):
    global WORKER_MARK
    WORKER_MARK = 100 + worker_id


class SelfInterruptingDataset(Dataset):
    """Each item sends SIGINT to the process that loads it (a terminal's Ctrl-C reaching a worker)."""

    def __len__(self):
        return 2

    def __getitem__(self, index):
        import signal

        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return torch.tensor([index, WORKER_MARK])
