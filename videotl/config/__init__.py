"""Configuration: PySlowFast-style keys in an fvcore ``CfgNode``, defaults split by concern.

``load_config(path, overrides)`` reads a YAML file (following ``_BASE_`` links), applies
``KEY VALUE`` overrides and validates the result in one step; every error names its key.
"""

import difflib
from pathlib import Path
from typing import Any, Callable, List, Sequence, Tuple

import yaml
from fvcore.common.config import CfgNode

from ..utils.fileio import atomic_write_text
from ._checks import ConfigError
from .data import add_data_defaults, validate_data
from .model import add_model_defaults, validate_model
from .run import add_run_defaults, validate_run
from .solver import add_solver_defaults, validate_solver
from .vit import add_vit_defaults, validate_vit

__all__ = ["ConfigError", "get_default_config", "load_config", "merge_overrides", "validate_config", "dump_config"]

# One (defaults, validator) pair per concern. A new concern (a model family, a dataset)
# adds its own module and registers it here.
CONCERNS: List[Tuple[Callable[[CfgNode], None], Callable[[CfgNode, list], None]]] = [
    (add_run_defaults, validate_run),
    (add_model_defaults, validate_model),
    (add_data_defaults, validate_data),
    (add_solver_defaults, validate_solver),
    (add_vit_defaults, validate_vit),
]


def get_default_config() -> CfgNode:
    cfg = CfgNode()
    for add_defaults, _ in CONCERNS:
        add_defaults(cfg)
    return cfg


def _coerce(key: str, default: Any, value: Any, source: str) -> Any:
    """Check ``value`` against the default's type; allow int -> float and tuple <-> list."""
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        if default and value:
            element = default[0]
            return [_coerce(f"{key}[{i}]", element, v, source) for i, v in enumerate(value)]
        return list(value)
    elif isinstance(default, int) and isinstance(value, int):
        return value
    elif isinstance(default, str) and isinstance(value, str):
        return value
    raise ConfigError(
        f"{key}: expected {type(default).__name__} (default {default!r}) but {source} gives "
        f"{type(value).__name__} {value!r}"
    )


def _merge(cfg: CfgNode, updates: dict, source: str, prefix: str = "") -> None:
    for name, value in updates.items():
        key = f"{prefix}{name}"
        if name not in cfg:
            close = difflib.get_close_matches(name, list(cfg.keys()), n=1)
            hint = f" (did you mean {prefix}{close[0]}?)" if close else ""
            raise ConfigError(f"unknown config key {key} in {source}{hint}")
        if isinstance(cfg[name], CfgNode):
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping of keys in {source}, got {value!r}")
            _merge(cfg[name], value, source, prefix=f"{key}.")
        else:
            cfg[name] = _coerce(key, cfg[name], value, source)


def merge_overrides(cfg: CfgNode, overrides: Sequence[str]) -> None:
    """Apply ``KEY VALUE`` pairs (values parsed as YAML: ``0.1``, ``True``, ``[1, 2]``, ``runs/x``)."""
    if len(overrides) % 2:
        raise ConfigError(f"overrides must come as KEY VALUE pairs, got an odd count: {list(overrides)}")
    for key, text in zip(overrides[0::2], overrides[1::2]):
        value = yaml.safe_load(text) if text != "" else ""
        nested: dict = {}
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        _merge(cfg, nested, "the command line")


def validate_config(cfg: CfgNode) -> None:
    errors: List[str] = []
    for _, validate in CONCERNS:
        validate(cfg, errors)
    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))


def load_config(path: str = "", overrides: Sequence[str] = ()) -> CfgNode:
    """Defaults <- YAML file (with its ``_BASE_`` chain) <- overrides, then validate and freeze."""
    cfg = get_default_config()
    if path:
        file = Path(path)
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}")
        try:
            # safe_load underneath: a config file never executes code.
            updates = CfgNode.load_yaml_with_base(str(file), allow_unsafe=False)
        except yaml.YAMLError as error:
            raise ConfigError(f"{file} is not valid YAML: {error}") from error
        except FileNotFoundError as error:
            raise ConfigError(f"{file}: _BASE_ file not found: {error.filename or error}") from error
        _merge(cfg, updates or {}, str(file))
    merge_overrides(cfg, list(overrides))
    validate_config(cfg)
    cfg.freeze()
    return cfg


def dump_config(cfg: CfgNode, output_dir: str = "") -> Path:
    """Write the resolved config to ``OUTPUT_DIR/config.yaml`` (atomically) and return its path."""
    path = Path(output_dir or cfg.OUTPUT_DIR) / "config.yaml"
    atomic_write_text(path, cfg.dump())
    return path
