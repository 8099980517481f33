"""ViT / ViViT defaults: patch or tubelet embedding, encoder size, classifier, TokenLearner placement.

The sizes follow ViT (Dosovitskiy et al. 2021): S = 384 wide, 12 layers, 6 heads, MLP 1536;
B = 768, 12, 12, 3072; L = 1024, 24, 16, 4096. The image (or clip) size the position
embeddings are built for is ``DATA.TRAIN_CROP_SIZE`` (and ``DATA.NUM_FRAMES`` for ViViT); other
sizes interpolate them.
"""

from pathlib import Path

from fvcore.common.config import CfgNode

from ..models.vit_models import ViTSpec
from ..settings import add_section, check_section

VIT_SECTIONS = {"VIT": ViTSpec}


def add_vit_defaults(cfg: CfgNode) -> None:
    add_section(cfg, "VIT", ViTSpec)


def validate_vit(cfg: CfgNode, errors: list) -> None:
    from .model import model_family

    check_section(errors, cfg, "VIT", ViTSpec)
    vit = cfg.VIT
    family = model_family(cfg.MODEL.ARCH)
    if family not in ("vit", "vivit"):
        return
    if vit.HIDDEN_SIZE % vit.NUM_HEADS:
        errors.append(f"VIT.HIDDEN_SIZE = {vit.HIDDEN_SIZE} is not divisible by VIT.NUM_HEADS = {vit.NUM_HEADS}")
    layer = vit.TOKENLEARNER_LAYER
    total = vit.DEPTH + vit.EXTRA_LAYERS
    fuser = cfg.TOKENLEARNER.FUSER == "tokenfuser"
    if layer < -1 or layer > vit.DEPTH:
        errors.append(f"VIT.TOKENLEARNER_LAYER = {layer}: must be -1 (none) or in [0, VIT.DEPTH = {vit.DEPTH}]")
    if layer == -1 and vit.EXTRA_LAYERS:
        errors.append(
            f"VIT.EXTRA_LAYERS = {vit.EXTRA_LAYERS} counts layers after the TokenLearner, but "
            "VIT.TOKENLEARNER_LAYER = -1; deepen the plain model with VIT.DEPTH instead"
        )
    if fuser and layer == total:
        errors.append(
            f"VIT.TOKENLEARNER_LAYER = {layer} with TOKENLEARNER.FUSER = 'tokenfuser' leaves no layer to fuse "
            f"(VIT.DEPTH + VIT.EXTRA_LAYERS = {total})"
        )
    # A crop that is not a multiple of the patch loses its right and bottom border to the strided
    # embedding, as in ViT and Scenic ('VALID' padding): L/14 at 512 sees 36 x 36 patches of 504 px.
    if family == "vivit" and cfg.DATA.NUM_FRAMES < vit.TUBELET_SIZE:
        errors.append(
            f"DATA.NUM_FRAMES = {cfg.DATA.NUM_FRAMES} is shorter than one tubelet (VIT.TUBELET_SIZE = {vit.TUBELET_SIZE})"
        )
    if cfg.DATA.TRAIN_CROP_SIZE < vit.PATCH_SIZE:
        errors.append(
            f"DATA.TRAIN_CROP_SIZE = {cfg.DATA.TRAIN_CROP_SIZE} is smaller than one patch (VIT.PATCH_SIZE = {vit.PATCH_SIZE})"
        )
    if vit.INIT.CHECKPOINT and not Path(vit.INIT.CHECKPOINT).is_file():
        errors.append(f"VIT.INIT.CHECKPOINT = {vit.INIT.CHECKPOINT!r}: file not found")
    if fuser and layer == -1:
        errors.append("TOKENLEARNER.FUSER = 'tokenfuser' needs a TokenLearner (VIT.TOKENLEARNER_LAYER >= 0)")
