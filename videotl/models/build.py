"""Config -> model: the only file in ``videotl.models`` that reads config keys.

``build_model(cfg)`` builds the registered model ``MODEL.ARCH`` (see :mod:`videotl.models.factory`).
The families' builders take their keyword arguments from the config sections through the adapters
of :data:`CONFIG_ADAPTERS` (``x2plus1d`` / ``x3d``: ``X3D``, ``RES5``, ``TOKENLEARNER``; ``vit`` /
``vivit``: ``VIT``, ``TOKENLEARNER``). Any other registered model (a named preset, a user's own)
takes ``MODEL.NUM_CLASSES`` and, where its builder accepts them, ``MODEL.DROPOUT_RATE`` as
``dropout_rate``, ``DATA.NUM_FRAMES`` as ``num_frames`` and ``DATA.TRAIN_CROP_SIZE`` as
``crop_size``; the rest of the architecture is the preset's own.
"""

import dataclasses
import inspect
from typing import Any, Callable, Dict

from fvcore.common.config import CfgNode
from torch import nn

from ..registry import Registry
from .components import TokenLearnerSpec
from .factory import create_model, model_entry

__all__ = ["CONFIG_ADAPTERS", "build_model", "model_kwargs_from_config", "tokenlearner_spec_from_config"]

ConfigAdapter = Callable[[CfgNode], Dict[str, Any]]
CONFIG_ADAPTERS: Registry[ConfigAdapter] = Registry("config adapter")


def tokenlearner_spec_from_config(cfg: CfgNode) -> TokenLearnerSpec:
    """The ``TOKENLEARNER`` section as a spec: each key is its field's name in capitals."""
    section = cfg.TOKENLEARNER
    return TokenLearnerSpec(**{f.name: section[f.name.upper()] for f in dataclasses.fields(TokenLearnerSpec)})


def _x3d_common(cfg: CfgNode) -> Dict[str, Any]:
    x3d = cfg.X3D
    return dict(
        num_classes=cfg.MODEL.NUM_CLASSES,
        stem_dim=x3d.STEM_DIM,
        stage_dims=tuple(x3d.STAGE_DIMS),
        stage_depths=tuple(x3d.STAGE_DEPTHS),
        spatial_strides=tuple(x3d.SPATIAL_STRIDES),
        bottleneck_factor=x3d.BOTTLENECK_FACTOR,
        conv5_dim=x3d.CONV5_DIM,
        head_dim=x3d.HEAD_DIM,
        dropout_rate=cfg.MODEL.DROPOUT_RATE,
    )


@CONFIG_ADAPTERS.register("x2plus1d")
def _x2plus1d_from_config(cfg: CfgNode) -> Dict[str, Any]:
    return dict(
        _x3d_common(cfg),
        res5_spatial=cfg.RES5.SPATIAL,
        res5_temporal=cfg.RES5.TEMPORAL,
        res5_converted_blocks=tuple(cfg.RES5.CONVERTED_BLOCKS),
        res5_num_heads=cfg.RES5.NUM_HEADS,
        tokenlearner=tokenlearner_spec_from_config(cfg),
        num_frames=cfg.DATA.NUM_FRAMES,
        crop_size=cfg.DATA.TRAIN_CROP_SIZE,
    )


@CONFIG_ADAPTERS.register("x3d")
def _x3d_from_config(cfg: CfgNode) -> Dict[str, Any]:
    return dict(_x3d_common(cfg), se_ratio=cfg.X3D.SE_RATIO)


@CONFIG_ADAPTERS.register("vit")
def _vit_from_config(cfg: CfgNode) -> Dict[str, Any]:
    vit = cfg.VIT
    return dict(
        num_classes=cfg.MODEL.NUM_CLASSES,
        image_size=cfg.DATA.TRAIN_CROP_SIZE,
        patch_size=vit.PATCH_SIZE,
        dim=vit.HIDDEN_SIZE,
        depth=vit.DEPTH,
        num_heads=vit.NUM_HEADS,
        mlp_dim=vit.MLP_DIM,
        classifier=vit.CLASSIFIER,
        representation_size=vit.REPRESENTATION_SIZE,
        dropout_rate=vit.DROPOUT_RATE,
        attention_dropout_rate=vit.ATTENTION_DROPOUT,
        mlp_hidden_dropout=vit.MLP_HIDDEN_DROPOUT,
        head_dropout_rate=cfg.MODEL.DROPOUT_RATE,
        head_bias_init=vit.HEAD_BIAS_INIT,
        tokenlearner_layer=vit.TOKENLEARNER_LAYER,
        extra_layers=vit.EXTRA_LAYERS,
        tokenlearner=tokenlearner_spec_from_config(cfg),
        init_checkpoint=vit.INIT.CHECKPOINT,
        init_inflation=vit.INIT.INFLATION,
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
