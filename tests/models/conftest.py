import pytest

# A tiny X3D-family network: the same code paths as X(2+1)D-M at a fraction of the cost.
TINY_X3D = [
    "X3D.STEM_DIM",
    "4",
    "X3D.STAGE_DIMS",
    "[4, 8, 8, 16]",
    "X3D.STAGE_DEPTHS",
    "[1, 1, 1, 3]",
    "X3D.CONV5_DIM",
    "24",
    "X3D.HEAD_DIM",
    "32",
    "RES5.CONVERTED_BLOCKS",
    "[1, 2]",
    "RES5.NUM_HEADS",
    "4",
    "TOKENLEARNER.DIM",
    "36",
    "TOKENLEARNER.NUM_HEADS",
    "4",
    "TOKENLEARNER.CHUNK_SIZE",
    "8",
    "DATA.NUM_FRAMES",
    "4",
    "DATA.TRAIN_JITTER_SCALES",
    "[64, 80]",
    "DATA.TRAIN_CROP_SIZE",
    "64",
    "DATA.TEST_CROP_SIZE",
    "64",
    "MODEL.NUM_CLASSES",
    "5",
]


@pytest.fixture
def tiny_x3d_overrides():
    return list(TINY_X3D)
