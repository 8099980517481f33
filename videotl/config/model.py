"""Model defaults: architecture, X3D-family widths and depths, the res5 module and TokenLearner."""

from fvcore.common.config import CfgNode

from ._checks import require_choice, require_positive, require_range

ARCHS = ("x2plus1d", "x3d", "vit", "vivit")
# What replaces (or keeps) the 1x3x3 spatial conv of a converted res5 block.
RES5_SPATIAL = ("conv2d", "none", "spatial_mhsa")
# What replaces the 3x1x1 temporal conv of a converted res5 block.
RES5_TEMPORAL = ("conv1d", "tokenlearner", "joint_mhsa", "temporal_mhsa", "mlp_mixer")
TOKENIZERS = ("tokenlearner", "tokenlearner_v11", "fixed_grid", "dense", "pool_mlp")
TOKEN_TRANSFORMERS = ("vector", "mhsa")
FUSERS = ("tokenfuser", "broadcast", "unpool_masks")
# videotl.models.vector_transformer.IMPLEMENTATIONS (not imported: the config does not load models).
ATTENTION_IMPLS = ("auto", "triton", "pytorch")


def add_model_defaults(cfg: CfgNode) -> None:
    cfg.MODEL = CfgNode()
    # Which builder in videotl.models.build makes the network.
    cfg.MODEL.ARCH = "x2plus1d"
    cfg.MODEL.NUM_CLASSES = 157
    # "bce_logits" for multi-label data (Charades), "cross_entropy" for single-label (AViD).
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

    cfg.TOKENLEARNER = CfgNode()
    cfg.TOKENLEARNER.TOKENIZER = "tokenlearner"
    cfg.TOKENLEARNER.NUM_TOKENS = 8
    # Layers of the attention function alpha: 1 (the video model) or 4 (3x3 convs with GELU, ViT).
    cfg.TOKENLEARNER.ALPHA_LAYERS = 1
    cfg.TOKENLEARNER.ALPHA_KERNEL = 1
    # "mean" is the paper's rho; the official Scenic code sums.
    cfg.TOKENLEARNER.POOLING = "mean"
    # Intermediate width d of the token transformer (the paper sets it to the block's width, 432).
    cfg.TOKENLEARNER.DIM = 432
    cfg.TOKENLEARNER.TRANSFORMER = "vector"
    cfg.TOKENLEARNER.NUM_HEADS = 8
    # Query chunk of the Vector Transformer; 0 builds the naive (ST x ST x d) version.
    cfg.TOKENLEARNER.CHUNK_SIZE = 64
    # Kernels of the Vector Transformer: "auto" (Triton on CUDA, the fused C kernels on CPU),
    # "triton" or "pytorch" (the chunked PyTorch ops) to force one.
    cfg.TOKENLEARNER.ATTENTION_IMPL = "auto"
    # Hidden width ratio of the MLP after the token transformer; 0 = none (matches the paper's 0.81M).
    cfg.TOKENLEARNER.MLP_RATIO = 0.0
    cfg.TOKENLEARNER.FUSER = "tokenfuser"
    # TokenFuser's token-axis linear map over all S*T tokens ("all", the paper) or per frame ("frame").
    cfg.TOKENLEARNER.FUSER_MIX = "all"


def validate_model(cfg: CfgNode, errors: list) -> None:
    require_choice(errors, cfg, "MODEL.ARCH", ARCHS)
    require_positive(errors, cfg, "MODEL.NUM_CLASSES")
    require_choice(errors, cfg, "MODEL.LOSS_FUNC", ("bce_logits", "cross_entropy"))
    require_choice(errors, cfg, "MODEL.HEAD_ACT", ("sigmoid", "softmax", "none"))
    require_range(errors, cfg, "MODEL.DROPOUT_RATE", 0.0, 1.0)
    if cfg.MODEL.LOSS_FUNC == "bce_logits" and cfg.MODEL.HEAD_ACT == "softmax":
        errors.append(
            "MODEL.HEAD_ACT = 'softmax' with MODEL.LOSS_FUNC = 'bce_logits': multi-label scores need 'sigmoid'"
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

    require_choice(errors, cfg, "RES5.SPATIAL", RES5_SPATIAL)
    require_choice(errors, cfg, "RES5.TEMPORAL", RES5_TEMPORAL)
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

    require_choice(errors, cfg, "TOKENLEARNER.TOKENIZER", TOKENIZERS)
    require_positive(errors, cfg, "TOKENLEARNER.NUM_TOKENS")
    require_positive(errors, cfg, "TOKENLEARNER.ALPHA_LAYERS")
    require_positive(errors, cfg, "TOKENLEARNER.ALPHA_KERNEL")
    if cfg.TOKENLEARNER.ALPHA_KERNEL % 2 == 0:
        errors.append(f"TOKENLEARNER.ALPHA_KERNEL = {cfg.TOKENLEARNER.ALPHA_KERNEL}: must be odd to keep the map size")
    require_choice(errors, cfg, "TOKENLEARNER.POOLING", ("mean", "sum"))
    require_positive(errors, cfg, "TOKENLEARNER.DIM")
    require_choice(errors, cfg, "TOKENLEARNER.TRANSFORMER", TOKEN_TRANSFORMERS)
    require_positive(errors, cfg, "TOKENLEARNER.NUM_HEADS")
    require_positive(errors, cfg, "TOKENLEARNER.CHUNK_SIZE", allow_zero=True)
    require_choice(errors, cfg, "TOKENLEARNER.ATTENTION_IMPL", ATTENTION_IMPLS)
    if cfg.TOKENLEARNER.CHUNK_SIZE == 0 and cfg.TOKENLEARNER.ATTENTION_IMPL != "auto":
        errors.append(
            f"TOKENLEARNER.ATTENTION_IMPL = {cfg.TOKENLEARNER.ATTENTION_IMPL!r} with TOKENLEARNER.CHUNK_SIZE = 0, "
            "which builds the naive implementation: set CHUNK_SIZE > 0 or ATTENTION_IMPL 'auto'"
        )
    require_positive(errors, cfg, "TOKENLEARNER.MLP_RATIO", allow_zero=True)
    require_choice(errors, cfg, "TOKENLEARNER.FUSER", FUSERS)
    require_choice(errors, cfg, "TOKENLEARNER.FUSER_MIX", ("all", "frame"))
    if cfg.TOKENLEARNER.TRANSFORMER == "mhsa" and cfg.TOKENLEARNER.DIM % cfg.TOKENLEARNER.NUM_HEADS:
        errors.append(
            f"TOKENLEARNER.DIM = {cfg.TOKENLEARNER.DIM} is not divisible by TOKENLEARNER.NUM_HEADS = "
            f"{cfg.TOKENLEARNER.NUM_HEADS}"
        )
    if cfg.TOKENLEARNER.FUSER == "unpool_masks" and cfg.TOKENLEARNER.TOKENIZER not in (
        "tokenlearner",
        "tokenlearner_v11",
    ):
        errors.append(
            "TOKENLEARNER.FUSER = 'unpool_masks' needs the TokenLearner's attention masks, but "
            f"TOKENLEARNER.TOKENIZER = {cfg.TOKENLEARNER.TOKENIZER!r} has none"
        )
