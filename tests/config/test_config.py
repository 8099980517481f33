import re

import pytest
import yaml

from videotl.config import ConfigError, dump_config, load_config


def test_overrides_are_typed_and_int_becomes_float():
    cfg = load_config(
        "", ["MODEL.NUM_CLASSES", "10", "SOLVER.BASE_LR_PER_DEVICE", "1", "RES5.CONVERTED_BLOCKS", "[0, 2]"]
    )
    assert cfg.MODEL.NUM_CLASSES == 10
    assert isinstance(cfg.SOLVER.BASE_LR_PER_DEVICE, float) and cfg.SOLVER.BASE_LR_PER_DEVICE == 1.0
    assert cfg.RES5.CONVERTED_BLOCKS == [0, 2]


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("MODEL:\n  NUM_CLASES: 3\n")
    with pytest.raises(ConfigError, match=r"MODEL\.NUM_CLASES.*bad\.yaml.*MODEL\.NUM_CLASSES"):
        load_config(str(path))


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"MODEL\.NUM_CLASSES: expected int"):
        load_config("", ["MODEL.NUM_CLASSES", "many"])
    with pytest.raises(ConfigError, match=r"DATA\.MEAN\[1\]: expected float"):
        load_config("", ["DATA.MEAN", "[0.4, abc, 0.4]"])


def test_inconsistent_values_are_all_reported():
    with pytest.raises(ConfigError) as info:
        load_config("", ["DATA.TRAIN_CROP_SIZE", "300", "RES5.CONVERTED_BLOCKS", "[9]", "MODEL.ARCH", "resnet"])
    message = str(info.value)
    assert "DATA.TRAIN_CROP_SIZE" in message
    assert "RES5.CONVERTED_BLOCKS" in message
    assert "MODEL.ARCH = 'resnet'" in message


def test_v10_tokenlearner_keys_with_another_tokenizer_are_refused():
    # The v1.1 tokenizer has no alpha convs, LayerNorm or pooling choice: these keys would be ignored.
    overrides = [
        "TOKENLEARNER.TOKENIZER",
        "tokenlearner_v11",
        "TOKENLEARNER.ALPHA_LAYERS",
        "4",
        "TOKENLEARNER.POOLING",
        "sum",
    ]
    with pytest.raises(ConfigError) as info:
        load_config("", overrides)
    assert str(info.value) == (
        "invalid config: TOKENLEARNER.ALPHA_LAYERS = 4 is read by the 'tokenlearner' tokenizer only, and "
        "TOKENLEARNER.TOKENIZER is 'tokenlearner_v11': remove it or use the v1.0 tokenizer; "
        "TOKENLEARNER.POOLING = 'sum' is read by the 'tokenlearner' tokenizer only, and "
        "TOKENLEARNER.TOKENIZER is 'tokenlearner_v11': remove it or use the v1.0 tokenizer"
    )
    # With the v1.0 tokenizer they are its settings; at their defaults they say nothing.
    assert load_config("", overrides[2:]).TOKENLEARNER.ALPHA_LAYERS == 4
    assert load_config("", overrides[:2]).TOKENLEARNER.TOKENIZER == "tokenlearner_v11"


def test_base_inheritance_and_dump(tmp_path):
    (tmp_path / "base.yaml").write_text("MODEL:\n  NUM_CLASSES: 7\nDATA:\n  NUM_FRAMES: 16\n")
    (tmp_path / "child.yaml").write_text("_BASE_: base.yaml\nDATA:\n  NUM_FRAMES: 8\n")
    cfg = load_config(str(tmp_path / "child.yaml"), ["OUTPUT_DIR", str(tmp_path / "out")])
    assert cfg.MODEL.NUM_CLASSES == 7 and cfg.DATA.NUM_FRAMES == 8
    dumped = yaml.safe_load(dump_config(cfg).read_text())
    assert dumped["DATA"]["NUM_FRAMES"] == 8 and dumped["MODEL"]["NUM_CLASSES"] == 7
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".tmp")]


def test_missing_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_config(str(tmp_path / "nope.yaml"))
    (tmp_path / "child.yaml").write_text("_BASE_: missing_base.yaml\n")
    with pytest.raises(ConfigError, match="missing_base.yaml"):
        load_config(str(tmp_path / "child.yaml"))


def test_yaml_never_executes_code(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("OUTPUT_DIR: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError):
        load_config(str(path))


def _leaves(node, prefix=""):
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _float_keys():
    from videotl.config import get_default_config

    keys = []
    for key, value in _leaves(get_default_config()):
        if isinstance(value, float):
            keys.append((key, False))
        elif isinstance(value, (list, tuple)) and value and isinstance(value[0], float):
            keys.append((key, True))
    return keys


def test_every_float_key_rejects_nan_and_infinity_from_the_command_line_and_files(tmp_path):
    keys = _float_keys()
    # The config has float scalars and float lists, among them the ones a NaN once slipped through.
    assert {"DATA.TARGET_FPS", "SOLVER.BASE_LR_PER_DEVICE", "DATA.MEAN"} <= {k for k, _ in keys}
    for key, is_list in keys:
        for text in (".nan", ".inf", "-.inf"):
            value = f"[0.5, {text}, 0.5]" if is_list else text
            with pytest.raises(ConfigError) as raised:
                load_config("", [key, value])
            message = str(raised.value)
            assert message.startswith(key) and "expected a finite number" in message and "\n" not in message
        section, _, name = key.rpartition(".")
        path = tmp_path / "bad.yaml"
        value = "[0.5, .nan, 0.5]" if is_list else ".nan"
        path.write_text(f"{section}:\n  {name}: {value}\n" if section else f"{name}: {value}\n")
        with pytest.raises(ConfigError, match=rf"^{re.escape(key)}.*bad\.yaml gives .*nan.*finite number"):
            load_config(str(path))


def test_seed_and_probability_ranges_name_the_key():
    with pytest.raises(ConfigError, match=r"RNG_SEED = -1: must lie in \[0, 2147483647\]"):
        load_config("", ["RNG_SEED", "-1"])
    with pytest.raises(ConfigError, match=r"RNG_SEED = 4294967296: must lie in"):
        load_config("", ["RNG_SEED", "4294967296"])
    assert load_config("", ["RNG_SEED", "2147483647"]).RNG_SEED == 2**31 - 1
    probabilities = [
        "MODEL.DROPOUT_RATE",
        "TOKENLEARNER.DROPOUT",
        "VIT.DROPOUT_RATE",
        "VIT.ATTENTION_DROPOUT",
        "SOLVER.LABEL_SMOOTHING",
        "SOLVER.MOMENTUM",
        "X3D.SE_RATIO",
    ]
    for key in probabilities:
        for value in ("-0.1", "1.5"):
            with pytest.raises(ConfigError, match=rf"{re.escape(key)} = {value}: must lie in \[0.0, 1.0\]"):
                load_config("", [key, value])


def test_base_cycles_are_named_with_the_chain_of_files(tmp_path):
    (tmp_path / "a.yaml").write_text("_BASE_: b.yaml\n")
    (tmp_path / "b.yaml").write_text("_BASE_: a.yaml\n")
    a, b = (tmp_path / "a.yaml").resolve(), (tmp_path / "b.yaml").resolve()
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path / "a.yaml"))
    assert str(raised.value) == f"_BASE_ cycle: {a} -> {b} -> {a}"
    (tmp_path / "self.yaml").write_text("_BASE_: ./self.yaml\nMODEL:\n  NUM_CLASSES: 3\n")
    me = (tmp_path / "self.yaml").resolve()
    with pytest.raises(ConfigError) as raised:
        load_config(str(tmp_path / "self.yaml"))
    assert str(raised.value) == f"_BASE_ cycle: {me} -> {me}"


def test_yaml_problems_are_one_line_from_files_and_the_command_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("MODEL:\n  NUM_CLASSES: [1, 2\nDATA: {}\n")
    with pytest.raises(ConfigError) as raised:
        load_config(str(path))
    assert str(raised.value).startswith(f"{path} is not valid YAML (line ") and "\n" not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        load_config("", ["DATA.MEAN", "[0.4, 0.4"])
    assert str(raised.value).startswith("DATA.MEAN: the command line value '[0.4, 0.4' is not valid YAML")
    assert "\n" not in str(raised.value)
    # A !!python tag on the command line is refused like one in a file: never constructed.
    with pytest.raises(ConfigError) as raised:
        load_config("", ["OUTPUT_DIR", "!!python/object/apply:os.system ['echo pwned']"])
    message = str(raised.value)
    assert message.startswith("OUTPUT_DIR: the command line value") and "python/object/apply" in message
    assert "\n" not in message


def test_validation_errors_are_joined_on_one_line():
    with pytest.raises(ConfigError) as raised:
        load_config("", ["RNG_SEED", "-5", "SOLVER.MOMENTUM", "2.0", "DATA.TARGET_FPS", "0"])
    message = str(raised.value)
    assert "\n" not in message and message.startswith("invalid config: ")
    assert all(key in message for key in ("RNG_SEED", "SOLVER.MOMENTUM", "DATA.TARGET_FPS"))
