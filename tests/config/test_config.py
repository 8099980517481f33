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
