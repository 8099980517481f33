"""Flax (Scenic) parameters -> videotl state dicts, for the TokenLearner ViT / ViViT and its modules.

The official TokenLearner code (``scenic/projects/token_learner/model.py``) is Flax; this module
reads its parameter trees and turns them into the state dict of the matching videotl module::

    from videotl.models import create_model
    from videotl.models.convert_flax import load_flax_weights

    model = create_model("vit_b16_tl16at9_v11_scenic")
    report = load_flax_weights(model, "checkpoint.msgpack")    # or a nested dict, or an .npz

Layouts: a flax ``Dense`` kernel is (in, out), PyTorch's ``Linear`` weight (out, in); a flax conv
kernel is (kh, kw, in, out) (or (kt, kh, kw, in, out)), PyTorch's (out, in, kh, kw); flax's
attention keeps q / k / v as three (C, heads, head_dim) kernels, videotl one fused (3C, C) weight;
LayerNorm ``scale`` is ``weight``. Every flax name must have a counterpart in the model and every
shape must match the model's, or a one-line :class:`FlaxConversionError` names the parameter.

Supported targets (the flax module each reads, by its auto names):

- :class:`~videotl.models.vit.VisionTransformer`: Scenic's ``TokenLearnerViT`` (``embedding``,
  ``Transformer/{posembed_input, encoderblock_i, TokenLearnerModule[V11]_j, TokenFuser_j,
  encoder_norm}``, ``pre_logits``, ``output_projection``), its ViViT form (a 3D ``embedding``), the
  baseline ViT (``cls``), and the encoder alone (the names without ``Transformer/``; with
  ``strict=False``, as the patch embedding and head are then missing);
- :class:`~videotl.models.tokenlearner.TokenLearner`: ``TokenLearnerModule`` (v1);
- :class:`~videotl.models.tokenlearner.TokenLearnerV11`: ``TokenLearnerModuleV11``;
- :class:`~videotl.models.tokenfuser.TokenFuser`: ``TokenFuser``.

The model must be built in Scenic's form (``VIT_TOKENLEARNER``: sum pooling, LayerNorm, four 3x3
convs; a TokenFuser mixing per frame with an MLP for its weights and a token-map bias), or the
shapes tell which setting differs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple, Union

import numpy as np
import torch
from torch import nn

from .tokenfuser import TokenFuser
from .tokenlearner import TokenLearner, TokenLearnerV11
from .vit import VisionTransformer

__all__ = ["FlaxConversionError", "flax_to_state_dict", "load_flax_weights", "read_flax_params"]

FlaxSource = Union[str, Path, Mapping[str, Any]]
# Where a training checkpoint keeps the model's parameters: flax's TrainState (``params``), the
# deprecated flax.optim trainers (``optimizer/target``), videotl's parity fixtures (``param``).
PARAM_ROOTS = ("params", "optimizer/target", "param")


class FlaxConversionError(ValueError):
    """A flax parameter tree that does not fit the target model (the message names the parameter)."""


# --------------------------------------------------------------------------------------------
# Reading parameter trees


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    flat: Dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name))
        else:
            flat[name] = value
    return flat


def _read_msgpack(path: Path) -> Mapping[str, Any]:
    try:
        import msgpack
    except ImportError:
        raise FlaxConversionError(
            f"{path}: reading a flax .msgpack file needs the msgpack package (pip install msgpack)"
        )

    def array(data: bytes) -> np.ndarray:
        shape, dtype, buffer = msgpack.unpackb(data, raw=True)
        name = dtype.decode() if isinstance(dtype, bytes) else dtype
        if name == "bfloat16":
            raise FlaxConversionError(f"{path}: bfloat16 arrays are not supported; save the checkpoint in float32")
        return np.frombuffer(buffer, dtype=np.dtype(name)).reshape(shape)

    # flax.serialization's extension types: 1 = ndarray, 2 = complex, 3 = numpy scalar.
    def ext_hook(code: int, data: bytes) -> Any:
        if code == 1:
            return array(data)
        if code == 3:
            return array(data)[()]
        if code == 2:
            real, imag = msgpack.unpackb(data)
            return complex(real, imag)
        return msgpack.ExtType(code, data)

    try:
        tree = msgpack.unpackb(path.read_bytes(), ext_hook=ext_hook, raw=False, strict_map_key=False)
    except (ValueError, msgpack.UnpackException) as error:
        raise FlaxConversionError(f"{path}: not a flax msgpack file ({error})")
    if not isinstance(tree, Mapping):
        raise FlaxConversionError(f"{path}: a flax msgpack file holds a mapping, this one a {type(tree).__name__}")
    return _unchunk(tree)


def _unchunk(tree: Any) -> Any:
    # flax.serialization splits arrays over 1 GiB into flat chunks {"0": ..., "1": ...}.
    if not isinstance(tree, Mapping):
        return tree
    if "__msgpack_chunked_array__" in tree:
        shape = tuple(tree["shape"][str(i)] for i in range(len(tree["shape"])))
        chunks = [tree["chunks"][str(i)] for i in range(len(tree["chunks"]))]
        return np.concatenate(chunks).reshape(shape)
    return {key: _unchunk(value) for key, value in tree.items()}


def read_flax_params(source: FlaxSource, *, subtree: Optional[str] = None) -> Dict[str, np.ndarray]:
    """A flax parameter tree as a flat ``{"a/b/c": array}`` dict.

    ``source`` is a nested mapping of arrays (flax's ``params``), a flat mapping with ``/``-joined
    names, or a file: ``.msgpack`` (``flax.serialization`` / ``flax.training.checkpoints``) or
    ``.npz`` (flat names). ``subtree`` takes the names under that path; by default the first of
    :data:`PARAM_ROOTS` that the tree has (a training checkpoint's parameters), else everything.
    Arrays may be numpy arrays, torch tensors or anything ``numpy.asarray`` takes (jax arrays).
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FlaxConversionError(f"{path}: file not found")
        if path.suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as data:
                    tree: Mapping[str, Any] = {name: data[name] for name in data.files}
            except (OSError, ValueError) as error:
                raise FlaxConversionError(f"{path}: not a readable .npz file ({error})")
        elif path.suffix == ".msgpack" or not path.suffix:
            tree = _read_msgpack(path)
        else:
            raise FlaxConversionError(f"{path}: expected a flax .msgpack checkpoint or an .npz of flat names")
        where = str(path)
    elif isinstance(source, Mapping):
        tree, where = source, "the parameter tree"
    else:
        raise FlaxConversionError(f"expected a file name or a mapping of flax parameters, got {type(source).__name__}")

    flat = _flatten(tree)
    roots = [subtree] if subtree is not None else [r for r in PARAM_ROOTS if any(n.startswith(r + "/") for n in flat)]
    root = roots[0] if roots else ""
    if root:
        flat = {name[len(root) + 1 :]: value for name, value in flat.items() if name.startswith(root + "/")}
        if not flat:
            raise FlaxConversionError(f"{where}: nothing under {root!r}")
    out: Dict[str, np.ndarray] = {}
    for name, value in flat.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        array = np.asarray(value)
        if array.dtype.kind not in "fiub":
            raise FlaxConversionError(f"{where}: {name} is not a numeric array (dtype {array.dtype})")
        out[name] = array
    return out


# --------------------------------------------------------------------------------------------
# Layouts


def _dense_kernel(a: np.ndarray) -> np.ndarray:
    if a.ndim != 2:
        raise ValueError(f"a Dense kernel is (in, out), got {a.ndim} dimensions")
    return a.T


def _conv_kernel(a: np.ndarray) -> np.ndarray:
    # (k..., in, out) -> (out, in, k...)
    if a.ndim not in (4, 5):
        raise ValueError(f"a conv kernel is (kh, kw, in, out) or (kt, kh, kw, in, out), got {a.ndim} dimensions")
    return np.moveaxis(a, (-1, -2), (0, 1))


def _heads_kernel(a: np.ndarray) -> np.ndarray:
    # query / key / value: (C, heads, head_dim) -> (heads * head_dim, C)
    if a.ndim != 3:
        raise ValueError(f"an attention q / k / v kernel is (dim, heads, head_dim), got {a.ndim} dimensions")
    return a.reshape(a.shape[0], -1).T


def _heads_bias(a: np.ndarray) -> np.ndarray:
    if a.ndim != 2:
        raise ValueError(f"an attention q / k / v bias is (heads, head_dim), got {a.ndim} dimensions")
    return a.reshape(-1)


def _out_kernel(a: np.ndarray) -> np.ndarray:
    # (heads, head_dim, C) -> (C, heads * head_dim)
    if a.ndim != 3:
        raise ValueError(f"an attention output kernel is (heads, head_dim, dim), got {a.ndim} dimensions")
    return a.reshape(-1, a.shape[-1]).T


def _same(a: np.ndarray) -> np.ndarray:
    return a


Layout = Callable[[np.ndarray], np.ndarray]
# (flax name relative to a module, videotl name relative to it, layout); "{i}" is a captured index.
Rule = Tuple[str, str, Layout]


def _layernorm(flax: str, torch_name: str) -> List[Rule]:
    return [(f"{flax}/scale", f"{torch_name}.weight", _same), (f"{flax}/bias", f"{torch_name}.bias", _same)]


def _dense(flax: str, torch_name: str) -> List[Rule]:
    return [(f"{flax}/kernel", f"{torch_name}.weight", _dense_kernel), (f"{flax}/bias", f"{torch_name}.bias", _same)]


def _tokenlearner_rules(module: TokenLearner) -> List[Rule]:
    convs = [index for index, layer in enumerate(module.alpha) if isinstance(layer, nn.Conv2d)]
    rules = _layernorm("LayerNorm_0", "norm")
    rules += [(f"Conv_{n}/kernel", f"alpha.{index}.weight", _conv_kernel) for n, index in enumerate(convs)]
    return rules


def _tokenlearner_v11_rules(module: TokenLearnerV11) -> List[Rule]:
    return (
        _layernorm("LayerNorm_0", "norm")
        + _dense("token_masking/Dense_0", "mlp.fc1")
        + _dense("token_masking/Dense_1", "mlp.fc2")
    )


def _tokenfuser_rules(module: TokenFuser) -> List[Rule]:
    return (
        _layernorm("fuser_mix_norm1", "token_norm")
        + _dense("Dense_0", "token_mix")
        + _layernorm("fuser_mix_norm2", "mixed_norm")
        + _layernorm("LayerNorm_0", "input_norm")
        + _dense("token_masking/Dense_0", "beta.fc1")
        + _dense("token_masking/Dense_1", "beta.fc2")
    )


_MODULE_RULES: Dict[type, Tuple[str, Callable[[Any], List[Rule]]]] = {
    TokenLearner: ("TokenLearnerModule", _tokenlearner_rules),
    TokenLearnerV11: ("TokenLearnerModuleV11", _tokenlearner_v11_rules),
    TokenFuser: ("TokenFuser", _tokenfuser_rules),
}


def _module_kind(module: nn.Module) -> Tuple[str, Callable[[Any], List[Rule]]]:
    for cls, kind in _MODULE_RULES.items():
        if type(module) is cls:
            return kind
    raise FlaxConversionError(
        f"no flax counterpart for {type(module).__name__}: the converter reads Scenic's TokenLearnerModule, "
        "TokenLearnerModuleV11 and TokenFuser"
    )


# --------------------------------------------------------------------------------------------
# Matching names


class _Converter:
    """Walks the flax names, maps each to a videotl name and layout, checks shapes against ``target``."""

    def __init__(self, params: Mapping[str, np.ndarray], target: Mapping[str, torch.Tensor]) -> None:
        self.params = params
        self.target = target
        self.state: Dict[str, torch.Tensor] = {}
        self.used: set = set()

    def put(self, flax_name: str, torch_name: str, value: np.ndarray, hint: str = "") -> None:
        if torch_name not in self.target:
            extra = f"; {hint}" if hint else ""
            raise FlaxConversionError(f"{flax_name}: the model has no {torch_name}{extra}")
        expected = tuple(self.target[torch_name].shape)
        if tuple(value.shape) != expected:
            raise FlaxConversionError(
                f"{flax_name}: converts to {torch_name} of shape {tuple(value.shape)}, but the model's is {expected}"
                + (f"; {hint}" if hint else "")
            )
        reference = self.target[torch_name]
        self.state[torch_name] = torch.tensor(np.array(value), dtype=reference.dtype)

    def apply(self, flax_prefix: str, torch_prefix: str, rules: List[Rule], hint: str = "") -> None:
        """The rules of one module, its flax names under ``flax_prefix``."""
        for flax_rel, torch_rel, layout in rules:
            flax_name = f"{flax_prefix}{flax_rel}"
            if flax_name not in self.params:
                continue
            try:
                value = layout(self.params[flax_name])
            except ValueError as error:
                raise FlaxConversionError(f"{flax_name}: {error} (shape {self.params[flax_name].shape})")
            self.put(flax_name, f"{torch_prefix}{torch_rel}", value, hint)
            self.used.add(flax_name)

    def unused(self) -> List[str]:
        return [name for name in self.params if name not in self.used]


def _check_tokenizer_kind(name: str, flax_kind: str, model: VisionTransformer) -> None:
    """A flax TokenLearner of the other version than the model's is a setting, not a layout, error."""
    tokenizer = model.tokenlearners[0] if model.tokenfuser else getattr(model, "tokenlearner", None)
    if tokenizer is None:
        raise FlaxConversionError(
            f"{name}: the flax model has a TokenLearner but this model none (VIT.TOKENLEARNER_LAYER)"
        )
    expected, _ = _module_kind(tokenizer)
    if flax_kind != expected:
        version = "tokenlearner_v11" if flax_kind == "TokenLearnerModuleV11" else "tokenlearner"
        raise FlaxConversionError(
            f"{name}: Scenic's {flax_kind}, but the model's tokenizer is {type(tokenizer).__name__} "
            f"(TOKENLEARNER.TOKENIZER {version})"
        )


_TOKENIZER_HINT = "Scenic's TokenLearner: TOKENLEARNER.LAYERNORM True, ALPHA_LAYERS 4, ALPHA_KERNEL 3"


def _vit_state(params: Mapping[str, np.ndarray], model: VisionTransformer) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    target = model.state_dict()
    # The encoder's names sit under "Transformer/" in the whole model; the encoder alone has none.
    enc = "Transformer/" if any(name.startswith("Transformer/") for name in params) else ""
    conv = _Converter(params, target)
    conv.apply("", "", [("embedding/kernel", "patch_embed.proj.weight", _conv_kernel)])
    conv.apply("", "", [("embedding/bias", "patch_embed.proj.bias", _same), ("cls", "cls_token", _same)])
    conv.apply(enc, "", [("posembed_input/pos_embedding", "pos_embed", _same)])
    conv.apply(enc, "", _layernorm("encoder_norm", "norm"))
    conv.apply("", "", _dense("pre_logits", "pre_logits.0"), hint="VIT.REPRESENTATION_SIZE")
    conv.apply("", "", _dense("output_projection", "head"), hint="MODEL.NUM_CLASSES")

    blocks = sorted({int(m.group(1)) for n in params if (m := re.match(rf"{enc}encoderblock_(\d+)/", n))})
    for index in blocks:
        flax, ours = f"{enc}encoderblock_{index}/", f"blocks.{index}."
        if ours + "norm1.weight" not in target:
            raise FlaxConversionError(
                f"{flax}: the model has {len(model.blocks)} layers (VIT.DEPTH + VIT.EXTRA_LAYERS)"
            )
        conv.apply(flax, ours, _layernorm("LayerNorm_0", "norm1") + _layernorm("LayerNorm_1", "norm2"))
        conv.apply(flax, ours, _dense("MlpBlock_0/Dense_0", "mlp.fc1") + _dense("MlpBlock_0/Dense_1", "mlp.fc2"))
        attn = f"{flax}MultiHeadDotProductAttention_0/"
        conv.apply(attn, f"{ours}attn.", [("out/kernel", "proj.weight", _out_kernel), ("out/bias", "proj.bias", _same)])
        for kind, layout in (("kernel", _heads_kernel), ("bias", _heads_bias)):
            names = [f"{attn}{part}/{kind}" for part in ("query", "key", "value")]
            present = [name for name in names if name in params]
            if not present:
                continue
            if len(present) < 3:
                missing = next(name for name in names if name not in params)
                raise FlaxConversionError(f"{missing}: missing (the fused q / k / v weight needs all three)")
            try:
                parts = [layout(params[name]) for name in names]
            except ValueError as error:
                raise FlaxConversionError(f"{names[0]}: {error}")
            conv.put(names[0], f"{ours}attn.qkv.{'weight' if kind == 'kernel' else 'bias'}", np.concatenate(parts))
            conv.used.update(names)

    for flax_kind in ("TokenLearnerModuleV11", "TokenLearnerModule"):
        pattern = re.compile(rf"{enc}{flax_kind}_(\d+)/")
        found = sorted({int(m.group(1)) for n in params if (m := pattern.match(n))})
        if not found:
            continue
        _check_tokenizer_kind(f"{enc}{flax_kind}_{found[0]}", flax_kind, model)
        for index in found:
            if model.tokenfuser:
                if index >= len(model.tokenlearners):
                    raise FlaxConversionError(
                        f"{enc}{flax_kind}_{index}: the model has {len(model.tokenlearners)} TokenLearners "
                        "(one per layer from VIT.TOKENLEARNER_LAYER on)"
                    )
                module, ours = model.tokenlearners[index], f"tokenlearners.{index}."
            else:
                if index:
                    raise FlaxConversionError(
                        f"{enc}{flax_kind}_{index}: a model without TokenFuser has one TokenLearner "
                        "(TOKENLEARNER.FUSER tokenfuser builds one per layer)"
                    )
                module, ours = model.tokenlearner, "tokenlearner."
            conv.apply(f"{enc}{flax_kind}_{index}/", ours, _module_kind(module)[1](module), hint=_TOKENIZER_HINT)

    fusers = sorted({int(m.group(1)) for n in params if (m := re.match(rf"{enc}TokenFuser_(\d+)/", n))})
    for index in fusers:
        name = f"{enc}TokenFuser_{index}"
        if not model.tokenfuser:
            raise FlaxConversionError(f"{name}: the model has no TokenFuser (TOKENLEARNER.FUSER tokenfuser)")
        if index >= len(model.fusers):
            raise FlaxConversionError(f"{name}: the model has {len(model.fusers)} TokenFusers")
        fuser = model.fusers[index]
        conv.apply(
            f"{name}/",
            f"fusers.{index}.",
            _tokenfuser_rules(fuser),
            hint="Scenic's fuser: TOKENLEARNER.FUSER_MIX frame, FUSER_WEIGHTS mlp, FUSER_MIX_BIAS True",
        )
    return conv.state, conv.unused()


def flax_to_state_dict(
    params: FlaxSource, model: nn.Module, *, strict: bool = True, subtree: Optional[str] = None
) -> Dict[str, torch.Tensor]:
    """Convert flax parameters (see :func:`read_flax_params`) to a state dict for ``model``.

    ``model`` is a :class:`VisionTransformer` (ViT or ViViT), :class:`TokenLearner`,
    :class:`TokenLearnerV11` or :class:`TokenFuser`; the tensors take its dtypes. Raises
    :class:`FlaxConversionError` for a flax name without a counterpart, a shape that differs from
    the model's, and (with ``strict``) a model parameter the tree does not provide.
    """
    flat = read_flax_params(params, subtree=subtree)
    if isinstance(model, VisionTransformer):
        state, unused = _vit_state(flat, model)
    else:
        _, rules = _module_kind(model)
        conv = _Converter(flat, model.state_dict())
        conv.apply("", "", rules(model))
        state, unused = conv.state, conv.unused()
    if unused:
        raise FlaxConversionError(
            f"{unused[0]}: no counterpart in {type(model).__name__}"
            + (f" (and {len(unused) - 1} more flax parameters)" if len(unused) > 1 else "")
        )
    if strict:
        missing = [name for name in model.state_dict() if name not in state]
        if missing:
            raise FlaxConversionError(
                f"{missing[0]}: not in the flax parameters"
                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
                + "; strict=False loads the rest"
            )
    return state


def load_flax_weights(
    model: nn.Module, source: FlaxSource, *, strict: bool = True, subtree: Optional[str] = None
) -> Dict[str, List[str]]:
    """Load flax parameters into ``model`` in place (see :func:`flax_to_state_dict`).

    Returns ``{"loaded": [...], "missing": [...]}``, the model's names that were set and those the
    tree lacked (always empty with ``strict``).
    """
    state = flax_to_state_dict(source, model, strict=strict, subtree=subtree)
    model.load_state_dict(state, strict=False)
    return {"loaded": sorted(state), "missing": [name for name in model.state_dict() if name not in state]}
