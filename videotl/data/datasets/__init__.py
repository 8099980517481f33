"""Annotation parsers (Charades, AViD, CSV lists, MMAction2 lists, Kinetics) and the dataset class they feed."""

from .avid import AvidLabelReport, load_avid
from .base import MODES, DatasetError, VideoDataset, VideoRecord
from .charades import load_charades, read_charades_classes
from .kinetics import KineticsReport, load_kinetics
from .mmaction import load_mmaction_list
from .video_list import load_csv

__all__ = [
    "MODES",
    "AvidLabelReport",
    "DatasetError",
    "KineticsReport",
    "VideoDataset",
    "VideoRecord",
    "load_avid",
    "load_charades",
    "load_csv",
    "load_kinetics",
    "load_mmaction_list",
    "read_charades_classes",
]
