"""ViT and ViViT (joint space-time) with TokenLearner and TokenFuser, laid out as the official
Scenic code (``scenic/projects/token_learner/model.py``) lays them out.

::

    image (B, 3, H, W)  or  clip (B, 3, T, H, W)
      -> patch embedding: conv p x p, stride p (ViT)  |  tubelet embedding: conv t x p x p, stride = kernel (ViViT)
      -> (B, C, T', H', W') -> tokens in time-major order (token t*H'*W' + y*W' + x)
      -> [prepend the class token] -> + learned position embedding -> dropout
      -> layers 0 .. k-1: EncoderBlock over all T'H'W' tokens
      -> Figure 3 (a): TokenLearner once, at k: S tokens per time step -> (B, T'S, C);
                       layers k .. depth+extra-1 see only those T'S tokens
         Figure 3 (b), with TokenFuser: every layer i >= k is
                       X -> TokenLearner_i -> EncoderBlock_i over T'S tokens -> TokenFuser_i(Y, X) + X
      -> LayerNorm -> class token | mean of the tokens -> [pre-logits: linear + tanh] -> dropout -> linear

A class token, when the config asks for one, never enters a TokenLearner: it is set aside before
the tokens are learned and put back in front of them, so it attends to the learned tokens (the
official code has no class token in its TokenLearner models; it pools with "gap").

Parameter names follow the common PyTorch ViT layout (``patch_embed.proj``, ``cls_token``,
``pos_embed``, ``blocks.i.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}``, ``norm``,
``head``), so an image state dict in that layout loads into ``load_pretrained``.
"""

import logging
from typing import Dict, List, Mapping, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from fvcore.common.config import CfgNode
from torch import nn

from .attention import Mlp, MultiHeadSelfAttention
from .build import register_model
from .tokenlearner import TokenLearner, TokenLearnerV11

Grid = Tuple[int, int, int]

logger = logging.getLogger("videotl.models")

# Flax's LayerNorm epsilon (PyTorch's default is 1e-5).
LN_EPS = 1e-6


def _tanh_gelu(mlp: Mlp) -> Mlp:
    """Flax's ``nn.gelu`` is the tanh approximation; the shared ``Mlp`` uses the exact GELU."""
    mlp.act = nn.GELU(approximate="tanh")
    return mlp


class PatchEmbed(nn.Module):
    """Non-overlapping patches (ViT) or tubelets (ViViT) -> a (B, C, T', H', W') token volume.

    ::

        image (B, 3, H, W) -> conv p x p, stride p -> (B, C, 1, H/p, W/p)
        clip (B, 3, T, H, W) -> conv t x p x p, stride (t, p, p) -> (B, C, T/t, H/p, W/p)

    Like the official 'VALID' convolution, a remainder of the input (512 px at patch 14) is dropped.
    An image model also takes a one-frame clip (B, 3, 1, H, W), the shape a video loader gives.
    """

    def __init__(self, *, dim: int, patch_size: int, tubelet_size: int = 0, in_channels: int = 3) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        if tubelet_size:
            kernel = (tubelet_size, patch_size, patch_size)
            self.proj: nn.Module = nn.Conv3d(in_channels, dim, kernel, stride=kernel)
        else:
            self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)

    def grid(self, frames: int, height: int, width: int) -> Grid:
        """Token grid (T', H', W') for an input of this size."""
        t = frames // self.tubelet_size if self.tubelet_size else 1
        return t, height // self.patch_size, width // self.patch_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.tubelet_size:
            if x.dim() != 5:
                raise ValueError(f"a tubelet embedding takes clips (B, 3, T, H, W), got shape {tuple(x.shape)}")
            return self.proj(x)
        if x.dim() == 5:
            if x.shape[2] != 1:
                raise ValueError(f"an image model takes (B, 3, H, W) or one-frame clips, got {x.shape[2]} frames")
            x = x[:, :, 0]
        return self.proj(x).unsqueeze(2)


class EncoderBlock(nn.Module):
    """ViT's pre-norm transformer layer (Scenic's ``Encoder1DBlock``) on (B, N, C) tokens.

    ::

        x -> LayerNorm -> MHSA -> dropout -> + x -> LayerNorm -> MLP (C -> mlp_dim -> C, GELU) -> dropout -> + .
    """

    def __init__(self, *, dim: int, num_heads: int, mlp_dim: int, dropout_rate: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = MultiHeadSelfAttention(dim=dim, num_heads=num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = _tanh_gelu(Mlp(dim=dim, hidden_dim=mlp_dim))
        self.drop = nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.drop(self.mlp(self.norm2(x)))


class SequenceTokenFuser(nn.Module):
    """TokenFuser on a token sequence, as Scenic's ``TokenFuser`` (the residual is added outside).

    ::

        Y (B, T*S, C) -> LayerNorm -> linear over the token axis (S -> S per time step, or
                         S*T -> S*T with mix="all"; zero-initialised) -> LayerNorm -> Y'
        X (B, T*N, C) -> LayerNorm -> MLP (C -> 64 -> S, GELU) -> sigmoid -> B_w (per time step N x S)
        out_t = B_w Y'_t -> dropout                      (B, T*N, C), the shape of X

    The zero token map makes a new fuser output zero, so a fused layer starts as the identity.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_tokens: int,
        num_frames: int = 1,
        mix: str = "frame",
        bottleneck_dim: int = 64,
        dropout_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if mix not in ("frame", "all"):
            raise ValueError(f"mix must be 'frame' or 'all', got {mix!r}")
        self.num_tokens = num_tokens
        self.num_frames = num_frames
        self.mix = mix
        mixed = num_tokens * num_frames if mix == "all" else num_tokens
        self.token_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.token_mix = nn.Linear(mixed, mixed)
        nn.init.zeros_(self.token_mix.weight)
        nn.init.zeros_(self.token_mix.bias)
        self.mixed_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.input_norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.beta = _tanh_gelu(Mlp(dim=dim, hidden_dim=bottleneck_dim, out_dim=num_tokens))
        self.drop = nn.Dropout(dropout_rate)

    def forward(self, tokens: torch.Tensor, original: torch.Tensor, *, num_frames: int) -> torch.Tensor:
        b, _, c = tokens.shape
        s = self.num_tokens
        if self.mix == "all" and num_frames != self.num_frames:
            raise ValueError(f"TokenFuser (mix='all') was built for {self.num_frames} time steps, got {num_frames}")
        y = self.token_norm(tokens)
        if self.mix == "all":
            y = self.token_mix(y.transpose(1, 2)).transpose(1, 2)
        else:
            y = self.token_mix(y.reshape(b * num_frames, s, c).transpose(1, 2)).transpose(1, 2)
        y = self.mixed_norm(y).reshape(b * num_frames, s, c)
        frames = original.reshape(b * num_frames, -1, c)  # (B*T, N, C)
        weights = torch.sigmoid(self.beta(self.input_norm(frames)))  # (B*T, N, S)
        return self.drop(weights @ y).reshape(b, -1, c)


class VisionTransformer(nn.Module):
    """ViT / ViViT (joint space-time attention) with an optional TokenLearner and TokenFuser.

    ``depth`` is the base model's layer count and ``extra_layers`` the layers added after the
    TokenLearner ("24+11"); ``tokenlearner_layer = k`` inserts it after the first k layers
    ("16-TL at 12"), -1 builds the plain model. ``grid`` is the token grid (T', H', W') the
    position embedding is learned for; other input sizes interpolate it.
    """

    def __init__(
        self,
        *,
        patch_embed: PatchEmbed,
        grid: Grid,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_dim: int,
        num_classes: int,
        classifier: str = "gap",
        representation_size: int = 0,
        dropout_rate: float = 0.0,
        head_dropout_rate: float = 0.0,
        tokenlearner_layer: int = -1,
        num_tokens: int = 8,
        extra_layers: int = 0,
        tokenlearner_v11: bool = False,
        tokenfuser: bool = False,
        fuser_mix: str = "frame",
    ) -> None:
        super().__init__()
        if classifier not in ("token", "gap"):
            raise ValueError(f"classifier must be 'token' or 'gap', got {classifier!r}")
        num_layers = depth + extra_layers
        if not -1 <= tokenlearner_layer <= depth:
            raise ValueError(f"tokenlearner_layer = {tokenlearner_layer} must be -1 or in [0, {depth}]")
        if extra_layers and tokenlearner_layer < 0:
            raise ValueError("extra_layers count layers after the TokenLearner; give tokenlearner_layer")
        if tokenfuser and not 0 <= tokenlearner_layer < num_layers:
            raise ValueError("a TokenFuser needs a TokenLearner before at least one layer")
        self.patch_embed = patch_embed
        self.grid = tuple(grid)
        self.classifier = classifier
        self.num_prefix = 1 if classifier == "token" else 0
        self.tokenlearner_layer = tokenlearner_layer
        self.tokenfuser = tokenfuser
        self.num_tokens = num_tokens

        num_positions = self.grid[0] * self.grid[1] * self.grid[2]
        if self.num_prefix:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix + num_positions, dim))
        self.pos_drop = nn.Dropout(dropout_rate)
        self.blocks = nn.ModuleList(
            EncoderBlock(dim=dim, num_heads=num_heads, mlp_dim=mlp_dim, dropout_rate=dropout_rate)
            for _ in range(num_layers)
        )

        def make_tokenlearner() -> nn.Module:
            if tokenlearner_v11:
                module = TokenLearnerV11(dim=dim, num_tokens=num_tokens)
                _tanh_gelu(module.mlp)
                return module
            # The paper's ViT alpha: four 3x3 convs of S channels with GELU between, sigmoid, and
            # the official code's LayerNorm in front and sum pooling.
            return TokenLearner(
                dim=dim, num_tokens=num_tokens, alpha_layers=4, alpha_kernel=3, pooling="sum", use_layernorm=True
            )

        if tokenfuser:
            fused = num_layers - tokenlearner_layer
            self.tokenlearners = nn.ModuleList(make_tokenlearner() for _ in range(fused))
            self.fusers = nn.ModuleList(
                SequenceTokenFuser(
                    dim=dim, num_tokens=num_tokens, num_frames=self.grid[0], mix=fuser_mix, dropout_rate=dropout_rate
                )
                for _ in range(fused)
            )
        elif tokenlearner_layer >= 0:
            self.tokenlearner = make_tokenlearner()

        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        if representation_size:
            self.pre_logits: nn.Module = nn.Sequential(nn.Linear(dim, representation_size), nn.Tanh())
            dim = representation_size
        else:
            self.pre_logits = nn.Identity()
        self.head_drop = nn.Dropout(head_dropout_rate)
        self.head = nn.Linear(dim, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # Scenic / ViT: xavier-uniform dense kernels, zero biases, N(0, 0.02) position embedding,
        # zero class token and a zero classifier (fine-tuning starts from uniform logits).
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and not name.endswith("token_mix"):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def position_embedding(self, grid: Grid) -> torch.Tensor:
        """The position embedding for token grid ``grid``, interpolated when it is not the built one."""
        return resize_position_embedding(self.pos_embed, src_grid=self.grid, dst_grid=grid, num_prefix=self.num_prefix)

    def _learn_tokens(self, tokenlearner: nn.Module, x: torch.Tensor, grid: Grid) -> torch.Tensor:
        """(B, T'H'W', C) patch tokens -> (B, T'S, C): S tokens learned per time step."""
        b, _, c = x.shape
        volume = x.transpose(1, 2).reshape(b, c, *grid)
        tokens, _ = tokenlearner(volume)
        return tokens

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Input -> the final normalised token sequence (B, [1 +] N, C)."""
        x = self.patch_embed(x)
        grid = tuple(x.shape[2:])
        x = x.flatten(2).transpose(1, 2)
        if self.num_prefix:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        x = self.pos_drop(x + self.position_embedding(grid))
        k, p = self.tokenlearner_layer, self.num_prefix
        for index, block in enumerate(self.blocks):
            if self.tokenfuser and index >= k:
                residual = x[:, p:]
                tokens = self._learn_tokens(self.tokenlearners[index - k], residual, grid)
                y = block(torch.cat([x[:, :p], tokens], dim=1))
                fused = self.fusers[index - k](y[:, p:], residual, num_frames=grid[0]) + residual
                x = torch.cat([y[:, :p], fused], dim=1)
                continue
            if index == k and not self.tokenfuser:
                x = torch.cat([x[:, :p], self._learn_tokens(self.tokenlearner, x[:, p:], grid)], dim=1)
            x = block(x)
        if k == len(self.blocks) and not self.tokenfuser:
            # TokenLearner after the last layer: the classifier reads the learned tokens.
            x = torch.cat([x[:, :p], self._learn_tokens(self.tokenlearner, x[:, p:], grid)], dim=1)
        return self.norm(x)

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens[:, 0] if self.classifier == "token" else tokens[:, self.num_prefix :].mean(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pre_logits(self.pool(self.forward_features(x)))
        return self.head(self.head_drop(features))


def resize_position_embedding(
    pos_embed: torch.Tensor, *, src_grid: Sequence[int], dst_grid: Sequence[int], num_prefix: int
) -> torch.Tensor:
    """Resample a (1, prefix + T*H*W, C) position embedding from grid ``src_grid`` to ``dst_grid``.

    Linear interpolation over (T, H, W), as ViT does for a new resolution. From one time step to
    T' it repeats the spatial table over time, which is ViViT's inflation of an image embedding
    (its temporal part starts at zero).
    """
    src_grid, dst_grid = tuple(src_grid), tuple(dst_grid)
    if src_grid == dst_grid:
        return pos_embed
    prefix, table = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    c = table.shape[-1]
    volume = table.reshape(1, *src_grid, c).permute(0, 4, 1, 2, 3)
    volume = F.interpolate(volume, size=dst_grid, mode="trilinear", align_corners=False)
    return torch.cat([prefix, volume.permute(0, 2, 3, 4, 1).reshape(1, -1, c)], dim=1)


def inflate_patch_kernel(weight: torch.Tensor, *, tubelet_size: int, mode: str = "central_frame") -> torch.Tensor:
    """(C, 3, p, p) image patch kernel -> (C, 3, t, p, p) tubelet kernel (ViViT's 3D initialisation).

    ``central_frame`` puts the image kernel on frame t // 2 and zeros elsewhere; ``average`` repeats
    it over the t frames divided by t (I3D inflation). On a clip of identical frames both give the
    image embedding of that frame.
    """
    if mode == "central_frame":
        inflated = weight.new_zeros(weight.shape[0], weight.shape[1], tubelet_size, *weight.shape[2:])
        inflated[:, :, tubelet_size // 2] = weight
        return inflated
    if mode == "average":
        return weight.unsqueeze(2).repeat(1, 1, tubelet_size, 1, 1) / tubelet_size
    raise ValueError(f"inflation mode must be 'central_frame' or 'average', got {mode!r}")


def _square_grid(count: int) -> Tuple[int, int]:
    side = int(round(count**0.5))
    if side * side != count:
        raise ValueError(f"a checkpoint's position embedding has {count} positions, not a square grid")
    return side, side


def load_pretrained(
    model: VisionTransformer,
    source: Union[str, Mapping[str, torch.Tensor]],
    *,
    inflation: str = "central_frame",
) -> Dict[str, List[str]]:
    """Initialise ``model`` from a ViT (image) or ViViT state dict; return what was done.

    - the patch kernel is inflated to a tubelet kernel when ``model`` is a ViViT and the source
      an image model (``inflation``: "central_frame" or "average");
    - the position embedding is resampled to the model's grid (repeated over time for a ViViT
      from an image model); a class-token entry is dropped or zero-filled to match the classifier;
    - the classifier (``head``, and ``pre_logits`` when shapes differ) keeps its fresh init, as
      the official fine-tuning does;
    - an image TokenFuser's token map (mix "all") becomes block-diagonal over the clip's time steps;
    - every other tensor (transformer layers, TokenLearner, TokenFuser) is copied as is and must
      match in shape. Keys the source lacks (a TokenLearner on top of plain ViT weights) keep
      their init and are listed under ``"missing"``.

    ``source`` is a file (a state dict, or a checkpoint holding one under ``"model"``,
    ``"model_state"`` or ``"state_dict"``) or a state dict.
    """
    if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
        try:
            state = torch.load(source, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for truncated or foreign files
            raise ValueError(f"cannot read ViT checkpoint {source}: {error}") from error
    else:
        state = source
    for key in ("model", "model_state", "state_dict"):
        if key in state and isinstance(state[key], Mapping):
            state = state[key]
            break
    state = {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if "patch_embed.proj.weight" not in state:
        raise ValueError("the checkpoint has no patch_embed.proj.weight: not a ViT / ViViT state dict in this layout")
    target = model.state_dict()
    report: Dict[str, List[str]] = {"loaded": [], "adapted": [], "kept_init": [], "missing": [], "unused": []}
    new_state: Dict[str, torch.Tensor] = {}

    for name, value in state.items():
        if name not in target:
            report["unused"].append(name)
            continue
        if name.startswith("head.") or (name.startswith("pre_logits.") and value.shape != target[name].shape):
            report["kept_init"].append(name)
            continue
        if name == "patch_embed.proj.weight" and value.dim() == 4 and target[name].dim() == 5:
            value = inflate_patch_kernel(value, tubelet_size=target[name].shape[2], mode=inflation)
            report["adapted"].append(name)
        elif name == "pos_embed":
            src_prefix = 1 if "cls_token" in state else 0
            src_grid = _source_grid(value.shape[1] - src_prefix, state, model)
            prefix = value[:, :src_prefix]
            if model.num_prefix and not src_prefix:
                prefix = value.new_zeros(1, 1, value.shape[-1])
            elif not model.num_prefix:
                prefix = value[:, :0]
            value = resize_position_embedding(
                torch.cat([prefix, value[:, src_prefix:]], dim=1),
                src_grid=src_grid,
                dst_grid=model.grid,
                num_prefix=model.num_prefix,
            )
            if src_grid != model.grid or src_prefix != model.num_prefix:
                report["adapted"].append(name)
        elif name.endswith("token_mix.weight") or name.endswith("token_mix.bias"):
            # An image fuser mixing "all" (S x S, T = 1) becomes the block-diagonal ST x ST map
            # that mixes each time step's tokens as the image model did.
            steps = target[name].shape[0] // value.shape[0]
            if steps > 1 and steps * value.shape[0] == target[name].shape[0]:
                value = torch.block_diag(*[value] * steps) if value.dim() == 2 else value.repeat(steps)
                report["adapted"].append(name)
        if value.shape != target[name].shape:
            raise ValueError(
                f"{name}: the checkpoint has shape {tuple(value.shape)} but the model {tuple(target[name].shape)}; "
                "check VIT.HIDDEN_SIZE / MLP_DIM / PATCH_SIZE / TOKENLEARNER.NUM_TOKENS against the checkpoint"
            )
        new_state[name] = value.to(target[name].dtype)
        if name not in report["adapted"]:
            report["loaded"].append(name)

    report["missing"] = [name for name in target if name not in state]
    model.load_state_dict(new_state, strict=False)
    return report


def _source_grid(positions: int, state: Mapping[str, torch.Tensor], model: VisionTransformer) -> Grid:
    """The token grid a checkpoint's position embedding was learned on."""
    t, h, w = model.grid
    if positions == t * h * w:
        return model.grid
    kernel = state.get("patch_embed.proj.weight")
    if kernel is None or kernel.dim() == 4:
        return (1, *_square_grid(positions))
    # A video checkpoint at another resolution: same time steps as this model, square frames.
    if positions % t:
        raise ValueError(
            f"a video checkpoint's position embedding ({positions} positions) does not split into {t} time steps"
        )
    return (t, *_square_grid(positions // t))


def create_vit(
    *,
    image_size: int,
    patch_size: int,
    dim: int,
    depth: int,
    num_heads: int,
    mlp_dim: int,
    num_classes: int,
    **kwargs,
) -> VisionTransformer:
    """ViT on ``image_size`` x ``image_size`` images (ViT-B/16: patch 16, dim 768, depth 12, 12
    heads, MLP 3072). ``kwargs`` go to :class:`VisionTransformer` (classifier, TokenLearner...)."""
    embed = PatchEmbed(dim=dim, patch_size=patch_size)
    return VisionTransformer(
        patch_embed=embed,
        grid=embed.grid(1, image_size, image_size),
        dim=dim,
        depth=depth,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
        num_classes=num_classes,
        **kwargs,
    )


def create_vivit(
    *,
    num_frames: int,
    image_size: int,
    patch_size: int,
    tubelet_size: int,
    dim: int,
    depth: int,
    num_heads: int,
    mlp_dim: int,
    num_classes: int,
    **kwargs,
) -> VisionTransformer:
    """ViViT with joint space-time attention (ViViT's model 1) on ``num_frames`` x ``image_size``^2
    clips, tokenised by tubelets ``tubelet_size`` x ``patch_size`` x ``patch_size`` (16x16x2)."""
    embed = PatchEmbed(dim=dim, patch_size=patch_size, tubelet_size=tubelet_size)
    return VisionTransformer(
        patch_embed=embed,
        grid=embed.grid(num_frames, image_size, image_size),
        dim=dim,
        depth=depth,
        num_heads=num_heads,
        mlp_dim=mlp_dim,
        num_classes=num_classes,
        **kwargs,
    )


def _common_kwargs(cfg: CfgNode) -> dict:
    vit, tl = cfg.VIT, cfg.VIT.TOKENLEARNER
    return dict(
        image_size=cfg.DATA.TRAIN_CROP_SIZE,
        patch_size=vit.PATCH_SIZE,
        dim=vit.HIDDEN_SIZE,
        depth=vit.DEPTH,
        num_heads=vit.NUM_HEADS,
        mlp_dim=vit.MLP_DIM,
        num_classes=cfg.MODEL.NUM_CLASSES,
        classifier=vit.CLASSIFIER,
        representation_size=vit.REPRESENTATION_SIZE,
        dropout_rate=vit.DROPOUT_RATE,
        head_dropout_rate=cfg.MODEL.DROPOUT_RATE,
        tokenlearner_layer=tl.LAYER,
        num_tokens=tl.NUM_TOKENS,
        extra_layers=vit.EXTRA_LAYERS,
        tokenlearner_v11=tl.V11,
        tokenfuser=tl.FUSER,
        fuser_mix=tl.FUSER_MIX,
    )


def _initialise(model: VisionTransformer, cfg: CfgNode) -> VisionTransformer:
    if cfg.VIT.INIT.CHECKPOINT:
        report = load_pretrained(model, cfg.VIT.INIT.CHECKPOINT, inflation=cfg.VIT.INIT.INFLATION)
        logger.info(
            "initialised from %s: %d tensors copied, adapted %s, kept init %s, not in the checkpoint %s, unused %s",
            cfg.VIT.INIT.CHECKPOINT,
            len(report["loaded"]),
            report["adapted"],
            report["kept_init"],
            report["missing"],
            report["unused"],
        )
    return model


@register_model("vit")
def build_vit(cfg: CfgNode) -> VisionTransformer:
    """ViT (``VIT.*``) on ``DATA.TRAIN_CROP_SIZE`` images, initialised from ``VIT.INIT.CHECKPOINT``."""
    return _initialise(create_vit(**_common_kwargs(cfg)), cfg)


@register_model("vivit")
def build_vivit(cfg: CfgNode) -> VisionTransformer:
    """ViViT (joint space-time) on ``DATA.NUM_FRAMES`` x ``DATA.TRAIN_CROP_SIZE``^2 clips; from a ViT
    checkpoint the patch kernel is inflated by ``VIT.INIT.INFLATION``."""
    model = create_vivit(num_frames=cfg.DATA.NUM_FRAMES, tubelet_size=cfg.VIT.TUBELET_SIZE, **_common_kwargs(cfg))
    return _initialise(model, cfg)
