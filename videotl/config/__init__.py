"""Configuration: PySlowFast-style keys in an fvcore ``CfgNode``, defaults split by concern.

``load_config(path, overrides)`` reads a YAML file (following ``_BASE_`` links), applies
``KEY VALUE`` overrides and validates the result in one step; every error names its key or file.

``path`` is a file, or the name of a config shipped with videotl (``charades_12fps.yaml``,
``configs/demo/synthetic_charades.yaml``; see :func:`list_configs`), found when no such file
exists. ``_BASE_`` is resolved relative to the file that names it, in either place.
"""

import difflib
import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, List, Mapping, Sequence, Tuple

import yaml
from fvcore.common.config import CfgNode

from ..registry import Registry
from ..settings import SettingInfo, describe_section
from ..utils.fileio import atomic_write_text
from ._checks import ConfigError
from .data import add_data_defaults, validate_data
from .model import SPEC_SECTIONS, add_model_defaults, validate_model
from .run import add_run_defaults, cuda_only_settings, validate_run
from .solver import add_solver_defaults, validate_solver
from .vit import VIT_SECTIONS, add_vit_defaults, validate_vit

__all__ = [
    "CONFIG_CONCERNS",
    "ConfigConcern",
    "ConfigError",
    "config_from_text",
    "cuda_only_settings",
    "describe_spec_keys",
    "dump_config",
    "find_config",
    "get_default_config",
    "list_configs",
    "load_config",
    "merge_overrides",
    "validate_config",
]


@dataclass(frozen=True)
class ConfigConcern:
    """One part of the config: a function adding its keys with defaults, one checking them (it
    appends a message per problem to the list it is given)."""

    add_defaults: Callable[[CfgNode], None]
    validate: Callable[[CfgNode, list], None]
    # Sections whose keys a spec dataclass declares (videotl.settings), listed by describe_spec_keys.
    spec_sections: Mapping[str, type] = field(default_factory=dict)


# A new concern (a model family, a dataset) registers its own pair; defaults are added in
# registration order.
CONFIG_CONCERNS: Registry[ConfigConcern] = Registry("config concern")
CONFIG_CONCERNS.register("run", ConfigConcern(add_run_defaults, validate_run))
CONFIG_CONCERNS.register("model", ConfigConcern(add_model_defaults, validate_model, SPEC_SECTIONS))
CONFIG_CONCERNS.register("data", ConfigConcern(add_data_defaults, validate_data))
CONFIG_CONCERNS.register("solver", ConfigConcern(add_solver_defaults, validate_solver))
CONFIG_CONCERNS.register("vit", ConfigConcern(add_vit_defaults, validate_vit, VIT_SECTIONS))

_PACKAGED = "videotl.configs"
_BASE_KEY = "_BASE_"


def describe_spec_keys() -> List[SettingInfo]:
    """Every key a spec declares (the model's sections: X3D, RES5, TOKENLEARNER, VIT), in order."""
    return [
        info
        for _, concern in CONFIG_CONCERNS.items()
        for section, spec in concern.spec_sections.items()
        for info in describe_section(section, spec)
    ]


def get_default_config() -> CfgNode:
    cfg = CfgNode()
    for _, concern in CONFIG_CONCERNS.items():
        concern.add_defaults(cfg)
    return cfg


def _packaged_root() -> Path:
    # Installed configs are plain files next to the package (a wheel is unpacked, an editable
    # install maps the checkout's configs/), so _BASE_ paths resolve like any file's.
    return Path(str(importlib.resources.files(_PACKAGED)))


def list_configs(pattern: str = "*") -> List[str]:
    """Names of the configs shipped with videotl (``ablations/joint_mhsa.yaml``, ...) matching
    the shell-style ``pattern`` (``"ablations/*"``), sorted."""
    root = _packaged_root()
    names = (p.relative_to(root).as_posix() for p in root.rglob("*.yaml"))
    return sorted(n for n in names if Path(n).match(pattern) or Path(n).with_suffix("").match(pattern))


def find_config(path: str) -> Path:
    """``path`` if it is a file, else the packaged config of that name (with or without a leading
    ``configs/`` and the ``.yaml`` suffix). Raises :class:`ConfigError` naming what was tried."""
    file = Path(path).expanduser()
    if file.is_file():
        return file
    name = Path(path).as_posix()
    if not file.is_absolute():
        root = _packaged_root()
        candidates = [name, name.removeprefix("configs/")]
        candidates += [c + ".yaml" for c in candidates if not c.endswith((".yaml", ".yml"))]
        for candidate in candidates:
            if (root / candidate).is_file():
                return root / candidate
    close = difflib.get_close_matches(name.removeprefix("configs/"), list_configs(), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ConfigError(f"config file not found: {path} is neither a file nor a config shipped with videotl{hint}")


def _yaml_error(path: Path, error: yaml.YAMLError) -> ConfigError:
    mark = getattr(error, "problem_mark", None)
    where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    return ConfigError(f"{path} is not valid YAML{where}: {problem}")


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror or error}") from None
    try:
        # safe_load: a config file never executes code (a !!python tag is an error).
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise _yaml_error(path, error) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, got {type(data).__name__}")
    return data


def config_chain(path: str) -> List[Tuple[Path, dict]]:
    """The files of ``path``'s ``_BASE_`` chain with their keys, base first.

    Raises :class:`ConfigError` for a missing base or a cycle (naming the chain of files).
    """
    chain: List[Tuple[Path, dict]] = []
    file = find_config(path)
    while True:
        resolved = file.resolve()
        seen = [p for p, _ in chain]
        if resolved in seen:
            names = " -> ".join(str(p) for p in seen) + f" -> {resolved}"
            raise ConfigError(f"_BASE_ cycle: {names}")
        data = _read_yaml(file)
        base = data.pop(_BASE_KEY, None)
        chain.append((resolved, data))
        if base is None:
            break
        if not isinstance(base, str) or not base:
            raise ConfigError(f"{file}: _BASE_ must be a file name, got {base!r}")
        base_file = Path(base).expanduser()
        if not base_file.is_absolute():
            base_file = file.parent / base_file
        if not base_file.is_file():
            raise ConfigError(f"{file}: _BASE_ file not found: {base_file}")
        file = base_file
    return list(reversed(chain))


def _coerce(key: str, default: Any, value: Any, source: str) -> Any:
    """Check ``value`` against the default's type; allow int -> float and tuple <-> list.
    Floats must be finite: no key takes NaN or infinity."""
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(default, bool) and isinstance(value, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ConfigError(f"{key}: {source} gives {value!r}; expected a finite number")
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
            close = difflib.get_close_matches(str(name), list(cfg.keys()), n=1)
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
    overrides = list(overrides)
    if len(overrides) % 2:
        raise ConfigError(f"overrides must come as KEY VALUE pairs, got an odd count: {overrides}")
    for key, text in zip(overrides[0::2], overrides[1::2]):
        if key.startswith("-"):
            raise ConfigError(f"unknown config key {key}: options go before the KEY VALUE overrides")
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError as error:
            problem = getattr(error, "problem", None) or str(error).splitlines()[0]
            raise ConfigError(f"{key}: the command line value {text!r} is not valid YAML: {problem}") from None
        nested: dict = {}
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
        _merge(cfg, nested, "the command line")


def validate_config(cfg: CfgNode) -> None:
    errors: List[str] = []
    for _, concern in CONFIG_CONCERNS.items():
        concern.validate(cfg, errors)
    if errors:
        raise ConfigError("invalid config: " + "; ".join(errors))


def load_config(path: str = "", overrides: Sequence[str] = ()) -> CfgNode:
    """Defaults <- YAML file (with its ``_BASE_`` chain) <- overrides, then validate and freeze."""
    cfg = get_default_config()
    if path:
        for file, updates in config_chain(str(path)):
            _merge(cfg, updates, str(file))
    merge_overrides(cfg, overrides)
    validate_config(cfg)
    cfg.freeze()
    return cfg


def config_from_text(text: str, *, source: str, overrides: Sequence[str] = ()) -> CfgNode:
    """Defaults <- a YAML text (a config stored in a checkpoint, ``cfg.dump()``) <- overrides, then
    validate and freeze. ``source`` names where the text came from in error messages."""
    try:
        updates = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{source} is not valid YAML: {problem}") from None
    if not isinstance(updates, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {type(updates).__name__}")
    updates.pop(_BASE_KEY, None)
    cfg = get_default_config()
    _merge(cfg, updates, source)
    merge_overrides(cfg, overrides)
    validate_config(cfg)
    cfg.freeze()
    return cfg


def dump_config(cfg: CfgNode, output_dir: str = "") -> Path:
    """Write the resolved config to ``OUTPUT_DIR/config.yaml`` (atomically) and return its path."""
    path = Path(output_dir or cfg.OUTPUT_DIR) / "config.yaml"
    atomic_write_text(path, cfg.dump())
    return path
