"""ViT / ViViT defaults: patch or tubelet embedding, encoder size, classifier, TokenLearner placement.

The sizes follow ViT (Dosovitskiy et al. 2021): S = 384 wide, 12 layers, 6 heads, MLP 1536;
B = 768, 12, 12, 3072; L = 1024, 24, 16, 4096. The image (or clip) size the position
embeddings are built for is ``DATA.TRAIN_CROP_SIZE`` (and ``DATA.NUM_FRAMES`` for ViViT); other
sizes interpolate them.
"""

from pathlib import Path

from fvcore.common.config import CfgNode

from ._checks import require_choice, require_positive, require_range

CLASSIFIERS = ("token", "gap")
INFLATIONS = ("central_frame", "average")


def add_vit_defaults(cfg: CfgNode) -> None:
    cfg.VIT = CfgNode()
    # Side of the square patch (ViT-B/16: 16); ViViT tubelets are TUBELET_SIZE x PATCH_SIZE^2.
    cfg.VIT.PATCH_SIZE = 16
    # Frames per tubelet (ViViT's 16x16x2); unused by the image model.
    cfg.VIT.TUBELET_SIZE = 2
    cfg.VIT.HIDDEN_SIZE = 768
    # The base model's layers ("24" in the paper's "24+11").
    cfg.VIT.DEPTH = 12
    cfg.VIT.NUM_HEADS = 12
    cfg.VIT.MLP_DIM = 3072
    # "token": a class token is prepended and read out; "gap": the mean of the final tokens.
    cfg.VIT.CLASSIFIER = "gap"
    # Width of ViT's pre-logits layer (linear + tanh, used for JFT pre-training); 0 = none.
    cfg.VIT.REPRESENTATION_SIZE = 0
    # Dropout after the position embeddings, on each residual branch, after the MLP's hidden layer
    # and in the TokenLearner / TokenFuser MLPs (Scenic's dropout_rate).
    cfg.VIT.DROPOUT_RATE = 0.0
    # Dropout on the attention weights (Scenic's attention_dropout_rate).
    cfg.VIT.ATTENTION_DROPOUT = 0.0
    # DROPOUT_RATE also after the MLP's hidden layer, where Scenic's MlpBlock has it; False: only on
    # the MLP's output.
    cfg.VIT.MLP_HIDDEN_DROPOUT = True
    # Initial bias of the classifier (the official ImageNet TokenLearner setting uses -10 with sigmoid).
    cfg.VIT.HEAD_BIAS_INIT = 0.0
    # Layers added after the TokenLearner ("+11" in "24+11"); they only see the learned tokens.
    cfg.VIT.EXTRA_LAYERS = 0
    # TokenLearner after this many layers ("16-TL at 12" -> 12); -1 = a plain ViT / ViViT. How it is
    # built is the TOKENLEARNER section; TOKENLEARNER.FUSER "tokenfuser" gives Figure 3 (b):
    # TokenLearner -> transformer layer -> TokenFuser + residual at every layer from here on.
    cfg.VIT.TOKENLEARNER_LAYER = -1

    cfg.VIT.INIT = CfgNode()
    # A ViT (or ViViT) state dict to start from, e.g. image weights for a ViViT. Empty: random init.
    cfg.VIT.INIT.CHECKPOINT = ""
    # How a 2D patch kernel becomes a tubelet kernel: all weight on the central frame, or the
    # kernel repeated over the tubelet and divided by its length (I3D filter inflation).
    cfg.VIT.INIT.INFLATION = "central_frame"


def validate_vit(cfg: CfgNode, errors: list) -> None:
    from .model import model_family

    vit = cfg.VIT
    for key in ("PATCH_SIZE", "TUBELET_SIZE", "HIDDEN_SIZE", "DEPTH", "NUM_HEADS", "MLP_DIM"):
        require_positive(errors, cfg, f"VIT.{key}")
    require_choice(errors, cfg, "VIT.CLASSIFIER", CLASSIFIERS)
    require_positive(errors, cfg, "VIT.REPRESENTATION_SIZE", allow_zero=True)
    require_range(errors, cfg, "VIT.DROPOUT_RATE", 0.0, 1.0)
    require_range(errors, cfg, "VIT.ATTENTION_DROPOUT", 0.0, 1.0)
    require_positive(errors, cfg, "VIT.EXTRA_LAYERS", allow_zero=True)
    require_choice(errors, cfg, "VIT.INIT.INFLATION", INFLATIONS)
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
