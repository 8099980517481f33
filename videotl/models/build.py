"""Config -> model: the only file in ``videotl.models`` that reads config keys.

``build_model(cfg)`` builds the registered model ``MODEL.ARCH`` (see :mod:`videotl.models.factory`).
The families' builders take their keyword arguments from the config sections through the adapters
of :data:`CONFIG_ADAPTERS` (``x2plus1d`` / ``x3d``: ``X3D``, ``RES5``, ``TOKENLEARNER``; ``vit`` /
``vivit``: ``VIT``, ``TOKENLEARNER``). Any other registered model (a named preset, a user's own)
takes ``MODEL.NUM_CLASSES`` and, where its builder accepts them, ``MODEL.DROPOUT_RATE`` as
``dropout_rate``, ``DATA.NUM_FRAMES`` as ``num_frames`` and ``DATA.TRAIN_CROP_SIZE`` as
``crop_size``; the rest of the architecture is the preset's own.
"""

import inspect
from typing import Any, Callable, Dict

from fvcore.common.config import CfgNode
from torch import nn

from ..registry import Registry
from ..settings import spec_from_section, spec_kwargs
from .components import TokenLearnerSpec
from .factory import create_model, model_entry
from .vit_models import ViTSpec
from .x3d_models import Res5Spec, X3DSpec

__all__ = ["CONFIG_ADAPTERS", "build_model", "model_kwargs_from_config", "tokenlearner_spec_from_config"]

ConfigAdapter = Callable[[CfgNode], Dict[str, Any]]
CONFIG_ADAPTERS: Registry[ConfigAdapter] = Registry("config adapter")


def tokenlearner_spec_from_config(cfg: CfgNode) -> TokenLearnerSpec:
    """The ``TOKENLEARNER`` section as a spec: each key is its field's name in capitals."""
    return spec_from_section(cfg, "TOKENLEARNER", TokenLearnerSpec)


def _x3d_common(cfg: CfgNode, **leave_out: str) -> Dict[str, Any]:
    x3d = spec_from_section(cfg, "X3D", X3DSpec)
    return dict(spec_kwargs(x3d, **leave_out), num_classes=cfg.MODEL.NUM_CLASSES, dropout_rate=cfg.MODEL.DROPOUT_RATE)


@CONFIG_ADAPTERS.register("x2plus1d")
def _x2plus1d_from_config(cfg: CfgNode) -> Dict[str, Any]:
    return dict(
        _x3d_common(cfg, leave_out=("se_ratio",)),
        **spec_kwargs(spec_from_section(cfg, "RES5", Res5Spec), prefix="res5_"),
        tokenlearner=tokenlearner_spec_from_config(cfg),
        num_frames=cfg.DATA.NUM_FRAMES,
        crop_size=cfg.DATA.TRAIN_CROP_SIZE,
    )


@CONFIG_ADAPTERS.register("x3d")
def _x3d_from_config(cfg: CfgNode) -> Dict[str, Any]:
    return _x3d_common(cfg)


@CONFIG_ADAPTERS.register("vit")
def _vit_from_config(cfg: CfgNode) -> Dict[str, Any]:
    return dict(
        spec_kwargs(spec_from_section(cfg, "VIT", ViTSpec), leave_out=("tubelet_size",)),
        num_classes=cfg.MODEL.NUM_CLASSES,
        image_size=cfg.DATA.TRAIN_CROP_SIZE,
        head_dropout_rate=cfg.MODEL.DROPOUT_RATE,
        tokenlearner=tokenlearner_spec_from_config(cfg),
    )


@CONFIG_ADAPTERS.register("vivit")
def _vivit_from_config(cfg: CfgNode) -> Dict[str, Any]:
    return dict(_vit_from_config(cfg), num_frames=cfg.DATA.NUM_FRAMES, tubelet_size=cfg.VIT.TUBELET_SIZE)


def _generic_kwargs(cfg: CfgNode, builder: Callable[..., nn.Module]) -> Dict[str, Any]:
    accepted = inspect.signature(builder).parameters
    kwargs: Dict[str, Any] = {"num_classes": cfg.MODEL.NUM_CLASSES}
    for name, value in (
        ("dropout_rate", cfg.MODEL.DROPOUT_RATE),
        ("num_frames", cfg.DATA.NUM_FRAMES),
        ("crop_size", cfg.DATA.TRAIN_CROP_SIZE),
    ):
        if name in accepted:
            kwargs[name] = value
    return kwargs


def model_kwargs_from_config(cfg: CfgNode) -> Dict[str, Any]:
    """The keyword arguments ``build_model`` gives the builder of ``MODEL.ARCH``."""
    entry = model_entry(cfg.MODEL.ARCH)
    if entry.config_adapter:
        return CONFIG_ADAPTERS.get(entry.config_adapter)(cfg)
    return _generic_kwargs(cfg, entry.builder)


def build_model(cfg: CfgNode) -> nn.Module:
    """Build the network ``cfg.MODEL.ARCH`` names; it returns logits (B, MODEL.NUM_CLASSES)."""
    return create_model(cfg.MODEL.ARCH, **model_kwargs_from_config(cfg))
