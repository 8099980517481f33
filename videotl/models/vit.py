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

import dataclasses
from typing import Any, Dict, List, Mapping, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.checkpoints import model_state_from, read_checkpoint
from .attention import GELU_TANH, Mlp, MultiHeadSelfAttention, lecun_normal_
from .components import FUSERS, NO_FUSER, PartContext, TokenLearnerSpec, build_tokenizer, tokenlearner_spec
from .tokenfuser import TokenFuser

Grid = Tuple[int, int, int]

# Flax's LayerNorm epsilon (PyTorch's default is 1e-5).
LN_EPS = 1e-6

# The TokenLearner as the official ViT code builds it: the paper's alpha of four 3x3 convs with GELU,
# after a LayerNorm, with sum pooling; a TokenFuser (when used) mixing each time step's tokens, its
# mixing weights from LayerNorm -> MLP -> sigmoid, and a bias in its token map.
VIT_TOKENLEARNER = TokenLearnerSpec(
    alpha_layers=4,
    alpha_kernel=3,
    pooling="sum",
    layernorm=True,
    fuser=NO_FUSER,
    fuser_mix="frame",
    fuser_weights="mlp",
    fuser_mix_bias=True,
)


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

        x -> LayerNorm -> MHSA (attention dropout) -> dropout -> + x
          -> LayerNorm -> MLP (C -> mlp_dim [-> dropout] -> C, tanh GELU) -> dropout -> + .

    The dropouts sit where Scenic has them; ``mlp_hidden_dropout=False`` drops only the MLP's output.
    """

    def __init__(
        self,
        *,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        dropout_rate: float = 0.0,
        attention_dropout_rate: float = 0.0,
        mlp_hidden_dropout: bool = True,
        act_layer=GELU_TANH,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        self.attn = MultiHeadSelfAttention(dim=dim, num_heads=num_heads, attention_dropout=attention_dropout_rate)
        self.drop = nn.Dropout(dropout_rate)
        self.norm2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(
            dim=dim,
            hidden_dim=mlp_dim,
            act_layer=act_layer,
            dropout=dropout_rate,
            hidden_dropout=dropout_rate if mlp_hidden_dropout else 0.0,
        )

    def reset_parameters_like_flax(self) -> None:
        self.attn.reset_parameters_like_flax()
        self.mlp.reset_parameters_like_flax()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x)))
        return x + self.mlp(self.norm2(x))


def _check_layout(classifier: str, depth: int, tokenlearner_layer: int, extra_layers: int, *, tokenfuser: bool) -> None:
    if classifier not in ("token", "gap"):
        raise ValueError(f"classifier must be 'token' or 'gap', got {classifier!r}")
    if not -1 <= tokenlearner_layer <= depth:
        raise ValueError(f"tokenlearner_layer = {tokenlearner_layer} must be -1 or in [0, {depth}]")
    if extra_layers and tokenlearner_layer < 0:
        raise ValueError("extra_layers count layers after the TokenLearner; give tokenlearner_layer")
    if tokenfuser and tokenlearner_layer >= 0 and not tokenlearner_layer < depth + extra_layers:
        raise ValueError("a TokenFuser needs a TokenLearner before at least one layer")


class VisionTransformer(nn.Module):
    """ViT / ViViT (joint space-time attention) with an optional TokenLearner and TokenFuser.

    ``depth`` is the base model's layer count and ``extra_layers`` the layers added after the
    TokenLearner ("24+11"); ``tokenlearner_layer = k`` inserts it after the first k layers
    ("16-TL at 12"), -1 builds the plain model. ``tokenlearner`` says how it is built (default
    :data:`VIT_TOKENLEARNER`, the official code's; a mapping changes some of its fields), and its
    ``fuser`` picks Figure 3 (a) (``"none"``) or (b) (``"tokenfuser"``). ``grid`` is the token grid
    (T', H', W') the position embedding is learned for; other input sizes interpolate it.

    Initialisation follows the official (flax) code: lecun-normal patch embedding and TokenLearner
    convs with zero biases, xavier-uniform attention projections per q / k / v, xavier-uniform MLP
    kernels with N(0, 1e-6) biases, N(0, 0.02) position embedding, zero class token, zero token maps
    and a zero classifier (``head_bias_init`` sets its bias; the official ImageNet setting uses -10).
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
        attention_dropout_rate: float = 0.0,
        mlp_hidden_dropout: bool = True,
        head_dropout_rate: float = 0.0,
        head_bias_init: float = 0.0,
        tokenlearner_layer: int = -1,
        extra_layers: int = 0,
        tokenlearner: Union[None, TokenLearnerSpec, Mapping[str, Any]] = None,
    ) -> None:
        super().__init__()
        spec = tokenlearner_spec(tokenlearner, base=VIT_TOKENLEARNER)
        num_layers = depth + extra_layers
        tokenfuser = spec.fuser != NO_FUSER
        _check_layout(classifier, depth, tokenlearner_layer, extra_layers, tokenfuser=tokenfuser)
        self.patch_embed = patch_embed
        self.grid = tuple(grid)
        self.classifier = classifier
        self.num_prefix = 1 if classifier == "token" else 0
        self.tokenlearner_layer = tokenlearner_layer
        self.tokenfuser = tokenfuser and tokenlearner_layer >= 0
        self.tokenlearner_spec = spec
        self.num_tokens = spec.num_tokens
        self.head_bias_init = head_bias_init

        num_positions = self.grid[0] * self.grid[1] * self.grid[2]
        if self.num_prefix:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_prefix + num_positions, dim))
        self.pos_drop = nn.Dropout(dropout_rate)
        self.blocks = nn.ModuleList(
            EncoderBlock(
                dim=dim,
                num_heads=num_heads,
                mlp_dim=mlp_dim,
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                mlp_hidden_dropout=mlp_hidden_dropout,
            )
            for _ in range(num_layers)
        )

        self._add_tokenlearner_parts(spec, dim=dim, dropout_rate=dropout_rate, num_layers=num_layers)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.head_dim = dim
        if representation_size:
            self.pre_logits: nn.Module = nn.Sequential(nn.Linear(dim, representation_size), nn.Tanh())
            self.head_dim = representation_size
        else:
            self.pre_logits = nn.Identity()
        self.head_drop = nn.Dropout(head_dropout_rate)
        self.head = nn.Linear(self.head_dim, num_classes)
        self._init_weights()

    def _add_tokenlearner_parts(
        self, spec: TokenLearnerSpec, *, dim: int, dropout_rate: float, num_layers: int
    ) -> None:
        """One TokenLearner after layer ``tokenlearner_layer``, or with a TokenFuser a TokenLearner
        and a TokenFuser around each layer from there on."""
        # The TokenLearner parts drop at the encoder's rate, as Scenic passes its dropout_rate to them.
        part = PartContext(
            dim=dim,
            num_frames=self.grid[0],
            spatial_size=self.grid[1:],
            tokenlearner=dataclasses.replace(spec, dropout=dropout_rate),
        )
        if self.tokenfuser:
            fused = num_layers - self.tokenlearner_layer
            self.tokenlearners = nn.ModuleList(build_tokenizer(part) for _ in range(fused))
            self.fusers = nn.ModuleList(FUSERS.get(spec.fuser)(part) for _ in range(fused))
            for fuser in self.fusers:
                if not isinstance(fuser, TokenFuser):
                    raise ValueError(f"a ViT fuses with TokenFuser ('tokenfuser' or 'none'), not {spec.fuser!r}")
        elif self.tokenlearner_layer >= 0:
            self.tokenlearner = build_tokenizer(part)

    def _init_weights(self) -> None:
        if isinstance(self.patch_embed.proj, (nn.Conv2d, nn.Conv3d)):
            lecun_normal_(self.patch_embed.proj.weight)
            nn.init.zeros_(self.patch_embed.proj.bias)
        for module in self.modules():
            if module is not self and hasattr(module, "reset_parameters_like_flax"):
                module.reset_parameters_like_flax()
        if isinstance(self.pre_logits, nn.Sequential):
            lecun_normal_(self.pre_logits[0].weight)
            nn.init.zeros_(self.pre_logits[0].bias)
        # Flax's normal(stddev=0.02) for the position embedding is not truncated.
        nn.init.normal_(self.pos_embed, std=0.02)
        self._init_head()

    def _init_head(self) -> None:
        nn.init.zeros_(self.head.weight)
        nn.init.constant_(self.head.bias, self.head_bias_init)

    @property
    def num_classes(self) -> int:
        return self.head.out_features

    def reset_classifier(self, num_classes: int) -> None:
        """A new zero-initialised classifier for ``num_classes`` (fine-tuning on another label set)."""
        self.head = nn.Linear(self.head_dim, num_classes).to(self.head.weight.device, self.head.weight.dtype)
        self._init_head()

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
                fused = self.fusers[index - k](y[:, p:], residual, num_frames=grid[0])
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

    def forward_head(self, features: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """The token sequence of :meth:`forward_features` -> logits (or the pooled representation)."""
        pooled = self.pre_logits(self.pool(features))
        return pooled if pre_logits else self.head(self.head_drop(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


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
        source = read_checkpoint(source)
    state = {k: v for k, v in model_state_from(source, tensors_only=True).items()}
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
