"""Model defaults: architecture, X3D-family widths and depths, the res5 module and TokenLearner."""

import difflib

from fvcore.common.config import CfgNode

from ..models.components import NO_FUSER, TokenLearnerSpec
from ..models.x3d_models import Res5Spec, X3DSpec
from ..settings import add_section, check_section
from ._checks import require_choice, require_positive, require_range

# The sections whose every key a model spec declares (type, default, allowed values, help): the
# spec is the one place a key is written; names are checked against the registries of
# videotl.models, so a user's registered tokenizer or res5 operator is accepted like a built-in one.
SPEC_SECTIONS = {"X3D": X3DSpec, "RES5": Res5Spec, "TOKENLEARNER": TokenLearnerSpec}


def add_model_defaults(cfg: CfgNode) -> None:
    cfg.MODEL = CfgNode()
    # A registered model (videotl.list_models()). The families x2plus1d, x3d, vit and vivit read
    # their sections below; a named model (x2plus1d_m_tokenlearner_charades, vit_b16, ...) is its
    # preset, with MODEL.NUM_CLASSES and the clip size from here.
    cfg.MODEL.ARCH = "x2plus1d"
    cfg.MODEL.NUM_CLASSES = 157
    # "bce_logits" for multi-label data (Charades), "cross_entropy" for single-label (AViD);
    # "bce_one_hot": a sigmoid head on single-label data, one-hot targets (the official TokenLearner
    # ImageNet setting).
    cfg.MODEL.LOSS_FUNC = "bce_logits"
    # Activation turning logits into scores at evaluation time.
    cfg.MODEL.HEAD_ACT = "sigmoid"
    cfg.MODEL.DROPOUT_RATE = 0.5
    # torch.compile the model (in place, static shapes: one graph per mode and batch shape) for
    # training and evaluation.
    cfg.MODEL.COMPILE = False
    # X3D (X3D-M widths by default; X(2+1)D shares them), the res5 module, and the TokenLearner of
    # both families: the paper's video model by default; the ViT family's configs
    # (configs/vit/imagenet.yaml, configs/vivit/kinetics400.yaml) set the official code's ViT form.
    for section, spec in SPEC_SECTIONS.items():
        add_section(cfg, section, spec)


def model_family(arch: str) -> str:
    """The family of registered model ``arch`` (``x3d``, ``vit``, ``vivit``), ``""`` for other or
    unknown names (``validate_model`` reports an unknown one)."""
    from ..models.factory import list_models, model_entry

    return model_entry(arch).family if arch in list_models() else ""


def _check_model_section(cfg: CfgNode, errors: list) -> None:
    from ..models.factory import list_models

    known = list_models()
    if cfg.MODEL.ARCH not in known:
        close = difflib.get_close_matches(cfg.MODEL.ARCH, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        errors.append(f"MODEL.ARCH = {cfg.MODEL.ARCH!r}: not a registered model{hint}; see videotl.list_models()")
    require_positive(errors, cfg, "MODEL.NUM_CLASSES")
    require_choice(errors, cfg, "MODEL.LOSS_FUNC", ("bce_logits", "cross_entropy", "bce_one_hot"))
    require_choice(errors, cfg, "MODEL.HEAD_ACT", ("sigmoid", "softmax", "none"))
    require_range(errors, cfg, "MODEL.DROPOUT_RATE", 0.0, 1.0)
    if cfg.MODEL.LOSS_FUNC in ("bce_logits", "bce_one_hot") and cfg.MODEL.HEAD_ACT == "softmax":
        errors.append(
            f"MODEL.HEAD_ACT = 'softmax' with MODEL.LOSS_FUNC = {cfg.MODEL.LOSS_FUNC!r}: sigmoid-trained scores need 'sigmoid'"
        )


def _check_x3d_stages(cfg: CfgNode, errors: list) -> None:
    x3d, res5 = cfg.X3D, cfg.RES5
    for key in ("STAGE_DEPTHS", "SPATIAL_STRIDES"):
        if len(x3d[key]) != len(x3d.STAGE_DIMS):
            errors.append(
                f"X3D.{key} has {len(x3d[key])} entries but X3D.STAGE_DIMS has {len(x3d.STAGE_DIMS)}: "
                "give one per stage width"
            )
    if x3d.STAGE_DEPTHS:
        depth = x3d.STAGE_DEPTHS[-1]
        for index in res5.CONVERTED_BLOCKS:
            if not -depth <= index < depth:
                errors.append(f"RES5.CONVERTED_BLOCKS has {index}, but res5 has {depth} blocks")
    if res5.SPATIAL == "none" and res5.TEMPORAL in ("conv1d", "temporal_mhsa", "mlp_mixer"):
        errors.append(
            f"RES5.SPATIAL = 'none' with RES5.TEMPORAL = {res5.TEMPORAL!r} leaves the converted blocks "
            "without any spatial operation"
        )


def _check_tokenlearner(cfg: CfgNode, errors: list) -> None:
    tl = cfg.TOKENLEARNER
    if tl.ALPHA_KERNEL % 2 == 0:
        errors.append(f"TOKENLEARNER.ALPHA_KERNEL = {tl.ALPHA_KERNEL}: must be odd to keep the map size")
    if tl.CHUNK_SIZE == 0 and tl.ATTENTION_IMPL != "auto":
        errors.append(
            f"TOKENLEARNER.ATTENTION_IMPL = {tl.ATTENTION_IMPL!r} with TOKENLEARNER.CHUNK_SIZE = 0, "
            "which builds the naive implementation: set CHUNK_SIZE > 0 or ATTENTION_IMPL 'auto'"
        )
    if tl.TRANSFORMER == "mhsa" and tl.DIM and tl.DIM % tl.NUM_HEADS:
        errors.append(f"TOKENLEARNER.DIM = {tl.DIM} is not divisible by TOKENLEARNER.NUM_HEADS = {tl.NUM_HEADS}")
    if tl.FUSER == "unpool_masks" and tl.TOKENIZER not in ("tokenlearner", "tokenlearner_v11"):
        errors.append(
            "TOKENLEARNER.FUSER = 'unpool_masks' needs the TokenLearner's attention maps, but "
            f"TOKENLEARNER.TOKENIZER = {tl.TOKENIZER!r} has none"
        )
    family = model_family(cfg.MODEL.ARCH)
    if family == "x3d" and tl.TOKENIZER != "tokenlearner":
        _check_v10_only_keys(tl, errors)
    if family == "x3d" and tl.FUSER == NO_FUSER and cfg.RES5.TEMPORAL == "tokenlearner":
        errors.append(
            "TOKENLEARNER.FUSER = 'none' leaves a res5 TokenLearner module without a way back to the feature "
            "map: use tokenfuser, broadcast or unpool_masks"
        )
    if family in ("vit", "vivit") and tl.FUSER not in ("tokenfuser", NO_FUSER):
        errors.append(f"TOKENLEARNER.FUSER = {tl.FUSER!r}: a ViT fuses with 'tokenfuser' or not at all ('none')")


# Keys of the X3D family's res5 that only its v1.0 TokenLearner reads: set with another tokenizer
# they would change nothing, silently.
_V10_ONLY_KEYS = ("ALPHA_LAYERS", "ALPHA_KERNEL", "LAYERNORM", "POOLING")


def _check_v10_only_keys(tl: CfgNode, errors: list) -> None:
    defaults = TokenLearnerSpec()
    for key in _V10_ONLY_KEYS:
        if tl[key] != getattr(defaults, key.lower()):
            errors.append(
                f"TOKENLEARNER.{key} = {tl[key]!r} is read by the 'tokenlearner' tokenizer only, and "
                f"TOKENLEARNER.TOKENIZER is {tl.TOKENIZER!r}: remove it or use the v1.0 tokenizer"
            )


def validate_model(cfg: CfgNode, errors: list) -> None:
    _check_model_section(cfg, errors)
    for section, spec in SPEC_SECTIONS.items():
        check_section(errors, cfg, section, spec)
    _check_x3d_stages(cfg, errors)
    _check_tokenlearner(cfg, errors)
