"""Named models: one registry, ``create_model(name, **overrides)`` and ``list_models(pattern)``.

Every network videotl builds is a registered entry point, a keyword-only builder with its defaults
in code (timm's ``register_model`` / ``create_model``)::

    import videotl
    videotl.list_models("x2plus1d_m*")
    model = videotl.create_model("x2plus1d_m_tokenlearner_charades", num_classes=10)
    model.default_cfg          # clip length, frame rate, input sizes, classes, the matching config

The built-in models register when ``videotl.models`` is imported (its ``x3d_models`` and
``vit_models``), so ``MODELS`` is full after ``import videotl``. A user's model joins the same
registry under a name of its own (a taken name raises unless ``override=True``), and configs
accept it as ``MODEL.ARCH``::

    @videotl.register_model(default_cfg={"num_frames": 16, "crop_size": 112})
    def my_net(*, num_classes: int = 400, **kwargs) -> nn.Module: ...

A config describes a model through its ``MODEL.ARCH`` and, for the families (``x2plus1d``,
``x3d``, ``vit``, ``vivit``), their config sections; see :func:`videotl.models.build_model`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional

from torch import nn

from ..registry import Registry

__all__ = ["MODELS", "ModelEntry", "create_model", "list_models", "model_entry", "register_model"]

# What a model needs from the data, shared by every entry unless it says otherwise.
DEFAULT_CFG: Dict[str, Any] = {
    "num_frames": 16,
    "fps": 12.0,
    "crop_size": 224,
    "test_crop_size": 256,
    "num_classes": 400,
    "multi_label": False,
    "mean": (0.45, 0.45, 0.45),
    "std": (0.225, 0.225, 0.225),
    "config": "",
}


@dataclass(frozen=True)
class ModelEntry:
    """A registered model.

    Attributes:
        name: the registered name.
        builder: keyword-only function returning the ``nn.Module``.
        family: ``x3d``, ``vit``, ``vivit`` (for config validation), or ``""``.
        config_adapter: name of the :data:`videotl.models.build.CONFIG_ADAPTERS` entry that turns a
            config into this builder's keyword arguments; ``""``: only ``MODEL.NUM_CLASSES`` (and
            the clip settings the builder accepts) come from the config.
        default_cfg: input and label settings (see ``DEFAULT_CFG``); ``config`` names the shipped
            config that describes the same model, when there is one.
        description: one line (the builder's docstring's first line by default).
    """

    name: str
    builder: Callable[..., nn.Module]
    family: str = ""
    config_adapter: str = ""
    default_cfg: Dict[str, Any] = field(default_factory=dict)
    description: str = ""


MODELS: Registry[ModelEntry] = Registry("model")


def register_model(
    builder: Optional[Callable[..., nn.Module]] = None,
    *,
    name: str = "",
    family: str = "",
    config_adapter: str = "",
    default_cfg: Optional[Dict[str, Any]] = None,
    override: bool = False,
):
    """Register ``builder`` under ``name`` (default: its function name); usable as a decorator
    with or without arguments. A taken name raises ``RegistryError`` unless ``override`` (then
    the new builder replaces the entry, with a warning)."""

    def register(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        doc = (fn.__doc__ or "").strip().splitlines()
        entry = ModelEntry(
            name=name or fn.__name__,
            builder=fn,
            family=family,
            config_adapter=config_adapter,
            default_cfg={**DEFAULT_CFG, **(default_cfg or {})},
            description=doc[0] if doc else "",
        )
        MODELS.register(entry.name, entry, override=override)
        return fn

    return register(builder) if builder is not None else register


def model_entry(name: str) -> ModelEntry:
    """The registered entry of ``name``; an unknown name raises ``RegistryError`` with suggestions."""
    return MODELS.get(name)


def list_models(pattern: str = "*") -> List[str]:
    """Registered model names matching the shell-style ``pattern`` (``"vit_*tl*"``), sorted."""
    return MODELS.names(pattern)


def create_model(name: str, *, num_classes: Optional[int] = None, **overrides: Any) -> nn.Module:
    """Build the registered model ``name`` with its defaults, changed by ``overrides``.

    ``num_classes`` and the other keyword arguments are the builder's (``help`` on the entry's
    builder lists them; ``tokenlearner={"num_tokens": 4}`` changes single TokenLearner fields).
    The model carries ``model.model_name`` and ``model.default_cfg``.
    """
    entry = model_entry(name)
    kwargs = dict(overrides)
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    model = entry.builder(**kwargs)
    default_cfg = dict(entry.default_cfg)
    if hasattr(model, "num_classes"):
        default_cfg["num_classes"] = int(model.num_classes)
    for key in ("num_frames", "crop_size"):
        if key in kwargs:
            default_cfg[key] = kwargs[key]
    model.model_name = name
    model.default_cfg = default_cfg
    return model
