import pytest

from videotl.config import ConfigError, load_config


def test_data_keys_have_defaults_and_rules():
    cfg = load_config("")
    assert (cfg.DATA.TRAIN_LABELS, cfg.DATA.AVID_NONE_LABEL, cfg.DATA.AVID_UNKNOWN_LABEL) == ("clip", "drop", "drop")
    assert cfg.DATA.PATH_LABEL_SEPARATOR == " " and cfg.DATA_LOADER.DECODER_THREADS == 0
    # The config's default reader is the decoding functions' (the config imports no decoder).
    from videotl.data.decoding import DEFAULT_BACKEND

    assert cfg.DATA.DECODING_BACKEND == DEFAULT_BACKEND
    with pytest.raises(ConfigError) as info:
        load_config(
            "",
            [
                "DATA.TRAIN_LABELS",
                "segment",
                "DATA.AVID_NONE_LABEL",
                "keep",
                "DATA.PATH_LABEL_SEPARATOR",
                "'::'",
                "DATA.MAX_SKIP_ATTEMPTS",
                "0",
                "DATA_LOADER.DECODER_THREADS",
                "-1",
            ],
        )
    message = str(info.value)
    for key in (
        "DATA.TRAIN_LABELS",
        "DATA.AVID_NONE_LABEL",
        "DATA.PATH_LABEL_SEPARATOR",
        "DATA.MAX_SKIP_ATTEMPTS",
        "DATA_LOADER.DECODER_THREADS",
    ):
        assert key in message


def test_charades_must_be_multi_label():
    with pytest.raises(ConfigError, match="Charades is multi-label"):
        load_config("", ["DATA.MULTI_LABEL", "False", "MODEL.LOSS_FUNC", "cross_entropy", "MODEL.HEAD_ACT", "softmax"])
    cfg = load_config(
        "",
        [
            "DATA.MULTI_LABEL",
            "False",
            "MODEL.LOSS_FUNC",
            "cross_entropy",
            "MODEL.HEAD_ACT",
            "softmax",
            "TRAIN.DATASET",
            "avid",
            "TEST.DATASET",
            "avid",
        ],
    )
    assert cfg.DATA.MULTI_LABEL is False
