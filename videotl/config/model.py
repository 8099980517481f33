"""Model defaults: architecture, X3D-family widths and depths, the res5 module and TokenLearner."""

import difflib

from fvcore.common.config import CfgNode

from ._checks import lookup, require_choice, require_positive, require_range

# Names are checked against the registries of videotl.models (a user's registered model, tokenizer
# or res5 operator is accepted like a built-in one).
POOLINGS = ("mean", "sum")
FUSER_MIXES = ("all", "frame")
FUSER_WEIGHTS = ("linear", "mlp")
# videotl.models.vector_transformer.IMPLEMENTATIONS.
ATTENTION_IMPLS = ("auto", "triton", "pytorch")


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

    # X3D family (X3D-M by default). X(2+1)D shares every width and depth with X3D.
    cfg.X3D = CfgNode()
    cfg.X3D.STEM_DIM = 24
    cfg.X3D.STAGE_DEPTHS = [3, 5, 11, 7]
    cfg.X3D.STAGE_DIMS = [24, 48, 96, 192]
    # Spatial stride of each stage's first block (1 or 2); with the stem's 2, res5 sees crop / 32.
    cfg.X3D.SPATIAL_STRIDES = [2, 2, 2, 2]
    # Inner (expanded) width of a block = round(stage width x BOTTLENECK_FACTOR): 54/108/216/432.
    cfg.X3D.BOTTLENECK_FACTOR = 2.25
    cfg.X3D.CONV5_DIM = 432
    cfg.X3D.HEAD_DIM = 2048
    # Only the X3D reference uses these; X(2+1)D has neither SE nor swish.
    cfg.X3D.SE_RATIO = 0.0625

    # The res5 stage's transformer module and which of its blocks carry it.
    cfg.RES5 = CfgNode()
    cfg.RES5.SPATIAL = "conv2d"
    cfg.RES5.TEMPORAL = "conv1d"
    # Indices of the res5 blocks that get the module (negative counts from the end). The paper does
    # not say which; three of seven fits its Table 10 (532 - 3 x (18.35 - 3.4) = 487 GFLOPs).
    cfg.RES5.CONVERTED_BLOCKS = [-3, -2, -1]
    # Heads of the standard multi-head attention variants (joint, spatial, temporal MHSA).
    cfg.RES5.NUM_HEADS = 8

    # The TokenLearner of both families (videotl.models.TokenLearnerSpec). The defaults are the
    # paper's video model; the ViT family's configs (configs/vit/imagenet.yaml,
    # configs/vivit/kinetics400.yaml) set the official code's ViT form. docs/faithfulness.md compares.
    cfg.TOKENLEARNER = CfgNode()
    cfg.TOKENLEARNER.TOKENIZER = "tokenlearner"
    cfg.TOKENLEARNER.NUM_TOKENS = 8
    # Layers of the attention function alpha: 1 (the video model) or 4 (3x3 convs with GELU, ViT).
    cfg.TOKENLEARNER.ALPHA_LAYERS = 1
    cfg.TOKENLEARNER.ALPHA_KERNEL = 1
    # "mean" is the paper's rho; the official Scenic code sums.
    cfg.TOKENLEARNER.POOLING = "mean"
    # LayerNorm before alpha (the official code; the ViT family).
    cfg.TOKENLEARNER.LAYERNORM = False
    # Initial weights of alpha: "torch" (PyTorch's default) or "flax" (the official code's
    # lecun-normal, whose wider spread starts the maps further from uniform). X3D family only: the
    # ViT family always starts like flax.
    cfg.TOKENLEARNER.ALPHA_INIT = "torch"
    # Hidden width of the v1.1 tokenizer's MLP (TOKENIZER tokenlearner_v11).
    cfg.TOKENLEARNER.V11_HIDDEN_DIM = 64
    # Width d of the token transformer's query / key projections; 0 = the block's width (432 in the
    # paper, where gamma of eq. 3 reduces to the softmax).
    cfg.TOKENLEARNER.DIM = 0
    cfg.TOKENLEARNER.TRANSFORMER = "vector"
    cfg.TOKENLEARNER.NUM_HEADS = 8
    # Query chunk of the Vector Transformer; 0 builds the naive (ST x ST x d) version.
    cfg.TOKENLEARNER.CHUNK_SIZE = 64
    # Kernels of the Vector Transformer: "auto" (Triton on CUDA, the fused C kernels on CPU),
    # "triton" or "pytorch" (the chunked PyTorch ops) to force one.
    cfg.TOKENLEARNER.ATTENTION_IMPL = "auto"
    # Hidden width ratio of the MLP after the token transformer; 0 = none (matches the paper's 0.81M).
    cfg.TOKENLEARNER.MLP_RATIO = 0.0
    # tokenfuser, broadcast, unpool_masks; "none" = no fuser (ViT only: the paper's Figure 3 (a)).
    cfg.TOKENLEARNER.FUSER = "tokenfuser"
    # TokenFuser's token-axis linear map over all S*T tokens ("all", the paper) or per frame ("frame",
    # the official code).
    cfg.TOKENLEARNER.FUSER_MIX = "all"
    # TokenFuser's mixing weights B_w: "linear" + sigmoid (the paper), or LayerNorm -> MLP -> sigmoid
    # ("mlp", the official code).
    cfg.TOKENLEARNER.FUSER_WEIGHTS = "linear"
    # A bias in the token-axis map (the official code has one; the paper's M has none).
    cfg.TOKENLEARNER.FUSER_MIX_BIAS = False
    # Hidden width of the "mlp" mixing weights.
    cfg.TOKENLEARNER.FUSER_HIDDEN_DIM = 64
    # Dropout inside the v1.1 MLP, the fuser's MLP and on the fuser's output (X3D family; the ViT
    # family uses VIT.DROPOUT_RATE there, as the official code does).
    cfg.TOKENLEARNER.DROPOUT = 0.0


def model_family(arch: str) -> str:
    """The family of registered model ``arch`` (``x3d``, ``vit``, ``vivit``), ``""`` for other or
    unknown names (``validate_model`` reports an unknown one)."""
    from ..models.factory import list_models, model_entry

    return model_entry(arch).family if arch in list_models() else ""


def _require_registered(errors: list, cfg: CfgNode, key: str, registry) -> None:
    value = lookup(cfg, key)
    if value not in registry:
        errors.append(f"{key} = {value!r}: must be one of {', '.join(map(repr, registry.names()))}")


def validate_model(cfg: CfgNode, errors: list) -> None:
    from ..models import components
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

    require_positive(errors, cfg, "X3D.STEM_DIM")
    require_positive(errors, cfg, "X3D.STAGE_DEPTHS")
    require_positive(errors, cfg, "X3D.STAGE_DIMS")
    require_positive(errors, cfg, "X3D.BOTTLENECK_FACTOR")
    require_positive(errors, cfg, "X3D.CONV5_DIM")
    require_positive(errors, cfg, "X3D.HEAD_DIM")
    require_range(errors, cfg, "X3D.SE_RATIO", 0.0, 1.0)
    if len(cfg.X3D.STAGE_DEPTHS) != len(cfg.X3D.STAGE_DIMS):
        errors.append(
            f"X3D.STAGE_DEPTHS has {len(cfg.X3D.STAGE_DEPTHS)} entries but X3D.STAGE_DIMS has "
            f"{len(cfg.X3D.STAGE_DIMS)}: give one depth per stage width"
        )
    if len(cfg.X3D.SPATIAL_STRIDES) != len(cfg.X3D.STAGE_DIMS):
        errors.append(
            f"X3D.SPATIAL_STRIDES has {len(cfg.X3D.SPATIAL_STRIDES)} entries but X3D.STAGE_DIMS has "
            f"{len(cfg.X3D.STAGE_DIMS)}: give one stride per stage"
        )
    if any(stride not in (1, 2) for stride in cfg.X3D.SPATIAL_STRIDES):
        errors.append(f"X3D.SPATIAL_STRIDES = {list(cfg.X3D.SPATIAL_STRIDES)}: each stride must be 1 or 2")

    _require_registered(errors, cfg, "RES5.SPATIAL", components.RES5_SPATIAL_OPS)
    _require_registered(errors, cfg, "RES5.TEMPORAL", components.RES5_TEMPORAL_OPS)
    require_positive(errors, cfg, "RES5.NUM_HEADS")
    if cfg.X3D.STAGE_DEPTHS:
        depth = cfg.X3D.STAGE_DEPTHS[-1]
        for index in cfg.RES5.CONVERTED_BLOCKS:
            if not -depth <= index < depth:
                errors.append(f"RES5.CONVERTED_BLOCKS has {index}, but res5 has {depth} blocks")
    if cfg.RES5.SPATIAL == "none" and cfg.RES5.TEMPORAL in ("conv1d", "temporal_mhsa", "mlp_mixer"):
        errors.append(
            f"RES5.SPATIAL = 'none' with RES5.TEMPORAL = {cfg.RES5.TEMPORAL!r} leaves the converted blocks "
            "without any spatial operation"
        )

    tl = cfg.TOKENLEARNER
    _require_registered(errors, cfg, "TOKENLEARNER.TOKENIZER", components.TOKENIZERS)
    require_positive(errors, cfg, "TOKENLEARNER.NUM_TOKENS")
    require_positive(errors, cfg, "TOKENLEARNER.ALPHA_LAYERS")
    require_positive(errors, cfg, "TOKENLEARNER.ALPHA_KERNEL")
    if tl.ALPHA_KERNEL % 2 == 0:
        errors.append(f"TOKENLEARNER.ALPHA_KERNEL = {tl.ALPHA_KERNEL}: must be odd to keep the map size")
    require_choice(errors, cfg, "TOKENLEARNER.POOLING", POOLINGS)
    require_choice(errors, cfg, "TOKENLEARNER.ALPHA_INIT", components.ALPHA_INITS)
    require_positive(errors, cfg, "TOKENLEARNER.V11_HIDDEN_DIM")
    require_positive(errors, cfg, "TOKENLEARNER.DIM", allow_zero=True)
    _require_registered(errors, cfg, "TOKENLEARNER.TRANSFORMER", components.TOKEN_TRANSFORMERS)
    require_positive(errors, cfg, "TOKENLEARNER.NUM_HEADS")
    require_positive(errors, cfg, "TOKENLEARNER.CHUNK_SIZE", allow_zero=True)
    require_choice(errors, cfg, "TOKENLEARNER.ATTENTION_IMPL", ATTENTION_IMPLS)
    if cfg.TOKENLEARNER.CHUNK_SIZE == 0 and cfg.TOKENLEARNER.ATTENTION_IMPL != "auto":
        errors.append(
            f"TOKENLEARNER.ATTENTION_IMPL = {cfg.TOKENLEARNER.ATTENTION_IMPL!r} with TOKENLEARNER.CHUNK_SIZE = 0, "
            "which builds the naive implementation: set CHUNK_SIZE > 0 or ATTENTION_IMPL 'auto'"
        )
    require_positive(errors, cfg, "TOKENLEARNER.MLP_RATIO", allow_zero=True)
    if tl.FUSER != components.NO_FUSER:
        _require_registered(errors, cfg, "TOKENLEARNER.FUSER", components.FUSERS)
    require_choice(errors, cfg, "TOKENLEARNER.FUSER_MIX", FUSER_MIXES)
    require_choice(errors, cfg, "TOKENLEARNER.FUSER_WEIGHTS", FUSER_WEIGHTS)
    require_positive(errors, cfg, "TOKENLEARNER.FUSER_HIDDEN_DIM")
    require_range(errors, cfg, "TOKENLEARNER.DROPOUT", 0.0, 1.0)
    if tl.TRANSFORMER == "mhsa" and tl.DIM and tl.DIM % tl.NUM_HEADS:
        errors.append(f"TOKENLEARNER.DIM = {tl.DIM} is not divisible by TOKENLEARNER.NUM_HEADS = {tl.NUM_HEADS}")
    if tl.FUSER == "unpool_masks" and tl.TOKENIZER not in ("tokenlearner", "tokenlearner_v11"):
        errors.append(
            "TOKENLEARNER.FUSER = 'unpool_masks' needs the TokenLearner's attention maps, but "
            f"TOKENLEARNER.TOKENIZER = {tl.TOKENIZER!r} has none"
        )
    family = model_family(cfg.MODEL.ARCH)
    if family == "x3d" and tl.FUSER == components.NO_FUSER and cfg.RES5.TEMPORAL == "tokenlearner":
        errors.append(
            "TOKENLEARNER.FUSER = 'none' leaves a res5 TokenLearner module without a way back to the feature "
            "map: use tokenfuser, broadcast or unpool_masks"
        )
    if family in ("vit", "vivit") and tl.FUSER not in ("tokenfuser", components.NO_FUSER):
        errors.append(f"TOKENLEARNER.FUSER = {tl.FUSER!r}: a ViT fuses with 'tokenfuser' or not at all ('none')")
