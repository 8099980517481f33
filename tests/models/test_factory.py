"""Named models: create_model / list_models, the config adapter, user models, one model API."""

import pytest
import torch
from torch import nn

import videotl
from videotl.config import ConfigError, load_config
from videotl.models import MODELS, build_model, create_model, list_models, register_model
from videotl.models.components import TOKENIZERS, TokenLearnerSpec
from videotl.registry import RegistryError

from .conftest import TINY_X3D

REQUIRED = [
    "x2plus1d_m",
    "x3d_m",
    "x2plus1d_m_tokenlearner_charades",
    "x2plus1d_m_tokenlearner_avid",
    "x2plus1d_m_joint_mhsa",
    "x2plus1d_m_conv2d_tokenlearner",
    "vit_b16",
    "vit_l16_24p11_tl16at12",
    "vivit_l16_tl16at12",
]


def test_the_paper_models_are_registered_and_listed_by_pattern():
    names = videotl.list_models()
    assert set(REQUIRED) <= set(names) and names == sorted(names)
    assert list_models("x2plus1d_m_tokenlearner_[ac]*") == [
        "x2plus1d_m_tokenlearner_avid",
        "x2plus1d_m_tokenlearner_charades",
    ]
    assert all("tl" in n for n in list_models("vivit_*tl*"))


def test_create_model_with_its_defaults_and_overrides():
    with torch.device("meta"):
        charades = create_model("x2plus1d_m_tokenlearner_charades")
        avid = create_model("x2plus1d_m_tokenlearner_avid")
        ten = create_model("x2plus1d_m_tokenlearner_charades", num_classes=10, tokenlearner={"num_tokens": 4})
    assert charades.num_classes == 157 and avid.num_classes == 887 and ten.num_classes == 10
    assert charades.default_cfg["num_frames"] == 64 and charades.default_cfg["config"] == "charades_12fps.yaml"
    assert charades.model_name == "x2plus1d_m_tokenlearner_charades"
    # AViD: the three converted blocks have no Conv2D; Charades keeps it.
    assert not hasattr(avid.stages[3][4].middle, "spatial") and hasattr(charades.stages[3][4].middle, "spatial")
    # A mapping changes one field of the preset's TokenLearner and keeps the others.
    tokenizer = ten.stages[3][4].middle.temporal.op.tokenizer
    assert tokenizer.num_tokens == 4 and tokenizer.pooling == "mean"
    with pytest.raises(TypeError, match="num_tokenz"):
        create_model("x2plus1d_m_tokenlearner_charades", tokenlearner={"num_tokenz": 4})


def test_named_model_equals_the_config_that_describes_it():
    with torch.device("meta"):
        named = create_model("x2plus1d_m_tokenlearner_avid")
        configured = build_model(load_config("avid.yaml"))
    assert {k: v.shape for k, v in named.state_dict().items()} == {
        k: v.shape for k, v in configured.state_dict().items()
    }


def test_config_accepts_a_model_registered_by_a_user_and_builds_it():
    @register_model(default_cfg={"num_frames": 4})
    def tiny_user_net(*, num_classes: int = 3, num_frames: int = 8) -> nn.Module:
        """A user's model: pooled clip -> linear."""
        net = nn.Sequential(nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(3, num_classes))
        net.frames_seen = num_frames
        return net

    try:
        cfg = load_config("", ["MODEL.ARCH", "tiny_user_net", "MODEL.NUM_CLASSES", "7", "DATA.NUM_FRAMES", "4"])
        model = build_model(cfg)
        assert model(torch.randn(2, 3, 4, 8, 8)).shape == (2, 7) and model.frames_seen == 4
        assert model.default_cfg["num_frames"] == 4
    finally:
        MODELS.unregister("tiny_user_net")
    with pytest.raises(ConfigError, match="MODEL.ARCH = 'tiny_user_net': not a registered model"):
        load_config("", ["MODEL.ARCH", "tiny_user_net"])


def test_models_are_registered_on_import_and_a_builtin_name_is_not_taken_silently():
    import subprocess
    import sys

    # A fresh interpreter: the registry is full right after the import, before any lookup.
    script = "import videotl.models as m; print(len(m.MODELS), 'x2plus1d_m_tokenlearner_charades' in m.MODELS)"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    count, present = result.stdout.split()
    assert int(count) == len(list_models()) and int(count) > 20 and present == "True"

    builtin = MODELS.get("x2plus1d_m_tokenlearner_charades")
    with pytest.raises(RegistryError, match="model 'x2plus1d_m_tokenlearner_charades' is registered already"):

        @register_model
        def x2plus1d_m_tokenlearner_charades(*, num_classes: int = 3) -> nn.Module:
            return nn.Linear(3, num_classes)

    assert MODELS.get("x2plus1d_m_tokenlearner_charades") is builtin


def test_config_accepts_a_registered_tokenizer():
    @TOKENIZERS.register("grid_again")
    def _grid_again(ctx):
        return TOKENIZERS.get("fixed_grid")(ctx)

    try:
        cfg = load_config("", [*TINY_X3D, "RES5.TEMPORAL", "tokenlearner", "TOKENLEARNER.TOKENIZER", "grid_again"])
        assert build_model(cfg)(torch.randn(1, 3, 4, 64, 64)).shape == (1, 5)
    finally:
        TOKENIZERS.unregister("grid_again")
    with pytest.raises(ConfigError, match="TOKENLEARNER.TOKENIZER = 'grid_again'"):
        load_config("", ["TOKENLEARNER.TOKENIZER", "grid_again"])


def _tiny_models():
    x3d = build_model(load_config("", [*TINY_X3D, "RES5.TEMPORAL", "tokenlearner"]))
    vit = create_model(
        "vit",
        image_size=32,
        patch_size=8,
        dim=32,
        depth=4,
        num_heads=4,
        mlp_dim=64,
        num_classes=5,
        tokenlearner_layer=2,
        tokenlearner=TokenLearnerSpec(num_tokens=3, alpha_layers=4, alpha_kernel=3, fuser="none"),
    )
    return [(x3d, torch.randn(2, 3, 4, 64, 64)), (vit, torch.randn(2, 3, 32, 32))]


@pytest.mark.parametrize("index", [0, 1], ids=["x2plus1d", "vit"])
def test_one_model_api_for_both_families(index):
    model, x = _tiny_models()[index]
    model.eval()
    nn.init.normal_(model.head.proj.weight if hasattr(model.head, "proj") else model.head.weight)
    with torch.no_grad():
        features = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(features), model(x))
        pooled = model.forward_head(features, pre_logits=True)
    assert pooled.dim() == 2 and pooled.shape[0] == 2
    assert model.num_classes == 5
    model.reset_classifier(11)
    assert model.num_classes == 11 and model(x).shape == (2, 11)
