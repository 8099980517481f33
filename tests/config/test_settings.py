"""Settings declared once (videotl.settings): a spec field gives the config key, its default, its
check, the spec built from the config and the key listing."""

import dataclasses
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Tuple

import pytest

from videotl.config import ConfigError, describe_spec_keys, get_default_config, load_config
from videotl.config import model as model_config
from videotl.models.components import TokenLearnerSpec
from videotl.settings import add_section, check_section, describe_section, setting, spec_from_section

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class _Spec:
    width: int = setting(4, help="a width", positive=True)
    padding: int = setting(0, help="a padding", non_negative=True)
    rate: float = setting(0.5, help="a rate", within=(0.0, 1.0))
    mode: str = setting("a", help="a mode", choices=("a", "b"))
    sizes: Tuple[int, ...] = setting((1, 2), help="sizes", choices=(1, 2, 4))
    path: str = setting("", key="INIT.PATH", help="a file")


def _section(**values):
    from fvcore.common.config import CfgNode

    cfg = CfgNode()
    add_section(cfg, "S", _Spec)
    for key, value in values.items():
        node = cfg.S
        *parents, name = key.split(".")
        for parent in parents:
            node = node[parent]
        node[name] = value
    return cfg


def test_section_holds_each_default_under_its_key():
    cfg = _section()
    assert dict(cfg.S) == {"WIDTH": 4, "PADDING": 0, "RATE": 0.5, "MODE": "a", "SIZES": [1, 2], "INIT": {"PATH": ""}}
    assert spec_from_section(cfg, "S", _Spec) == _Spec()


def test_each_declaration_gives_its_one_line_error():
    errors = []
    check_section(errors, _section(WIDTH=0, PADDING=-1, RATE=1.5, MODE="c", SIZES=[1, 3]), "S", _Spec)
    assert errors == [
        "S.WIDTH = 0: must be > 0",
        "S.PADDING = -1: must be >= 0",
        "S.RATE = 1.5: must lie in [0.0, 1.0]",
        "S.MODE = 'c': must be one of 'a', 'b'",
        "S.SIZES = [1, 3]: each must be one of 1, 2, 4",
    ]
    errors = []
    check_section(errors, _section(WIDTH=1, PADDING=0, RATE=1.0, MODE="b", SIZES=[4]), "S", _Spec)
    assert errors == []


def test_spec_from_section_reads_nested_keys_and_makes_lists_tuples():
    spec = spec_from_section(_section(**{"INIT.PATH": "w.pth", "SIZES": [4, 4, 1]}), "S", _Spec)
    assert spec.path == "w.pth" and spec.sizes == (4, 4, 1)


def test_describe_section_lists_every_key():
    rows = describe_section("S", _Spec)
    assert [(r.key, r.type, r.default, r.allowed) for r in rows] == [
        ("S.WIDTH", "int", 4, "> 0"),
        ("S.PADDING", "int", 0, ">= 0"),
        ("S.RATE", "float", 0.5, "[0.0, 1.0]"),
        ("S.MODE", "str", "a", "'a', 'b'"),
        ("S.SIZES", "list of int", [1, 2], "1, 2, 4"),
        ("S.INIT.PATH", "str", "", ""),
    ]
    assert rows[0].help == "a width"


def test_undeclared_field_is_refused():
    @dataclass(frozen=True)
    class Loose:
        width: int = 3

    with pytest.raises(TypeError, match="Loose fields width are not declared with setting"):
        describe_section("L", Loose)


def test_a_new_tokenlearner_field_is_one_edit(monkeypatch):
    """A field added to the spec (here in a subclass) is a config key with its default, takes a
    command-line override, is checked, and reaches the spec: no other place names it."""

    @dataclass(frozen=True)
    class WithTemperature(TokenLearnerSpec):
        temperature: float = setting(1.0, help="divides alpha's logits", positive=True)

    monkeypatch.setitem(model_config.SPEC_SECTIONS, "TOKENLEARNER", WithTemperature)
    assert get_default_config().TOKENLEARNER.TEMPERATURE == 1.0
    cfg = load_config("", ["TOKENLEARNER.TEMPERATURE", "0.5", "TOKENLEARNER.NUM_TOKENS", "4"])
    spec = spec_from_section(cfg, "TOKENLEARNER", WithTemperature)
    assert spec == dataclasses.replace(WithTemperature(), temperature=0.5, num_tokens=4)
    with pytest.raises(ConfigError, match=r"TOKENLEARNER.TEMPERATURE = -2.0: must be > 0"):
        load_config("", ["TOKENLEARNER.TEMPERATURE", "-2.0"])
    assert "TOKENLEARNER.TEMPERATURE" in {info.key for info in describe_spec_keys()}


def test_model_keys_are_all_declared_and_listed_by_model_info():
    cfg = get_default_config()

    def keys(node, prefix):
        for name, value in node.items():
            yield from keys(value, f"{prefix}{name}.") if isinstance(value, dict) else [f"{prefix}{name}"]

    expected = [key for section in ("X3D", "RES5", "TOKENLEARNER", "VIT") for key in keys(cfg[section], f"{section}.")]
    assert sorted(info.key for info in describe_spec_keys()) == sorted(expected)
    result = subprocess.run(
        [sys.executable, "tools/model_info.py", "--cfg", "demo/synthetic_charades.yaml", "--help-keys"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    listed = [line.split(" (")[0] for line in lines[::2]]
    assert listed == [info.key for info in describe_spec_keys()]
    # The demo sets X3D.STEM_DIM 8 (default 24) and keeps X3D.BOTTLENECK_FACTOR at its default.
    assert "X3D.STEM_DIM (int) = 8  (default 24)  allowed: > 0" in lines
    assert "X3D.BOTTLENECK_FACTOR (float) = 2.25  allowed: > 0" in lines
    assert all(line.startswith("    ") and line.strip() for line in lines[1::2])
