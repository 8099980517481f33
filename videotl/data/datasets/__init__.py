"""Annotation parsers (Charades, AViD, CSV) and the dataset class they feed."""

from .avid import AvidLabelReport, load_avid
from .base import MODES, DatasetError, VideoDataset, VideoRecord
from .charades import load_charades, read_charades_classes
from .video_list import load_csv

__all__ = [
    "MODES",
    "AvidLabelReport",
    "DatasetError",
    "VideoDataset",
    "VideoRecord",
    "load_avid",
    "load_charades",
    "load_csv",
    "read_charades_classes",
]
