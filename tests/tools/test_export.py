"""tools/export.py: TorchScript, torch.export and ONNX files of a trained TokenLearner model that
reproduce the eager model's outputs."""

import pytest
import torch

from videotl.engine.checkpoint import read_checkpoint
from videotl.models.export import export_model, load_exported, round_trip_error
from videotl_tools import export as tool

# Tests that use the session fixture tiny_trained run on one xdist worker, which builds it once.
pytestmark = pytest.mark.xdist_group("tiny_trained")


def _perturbed_checkpoint(checkpoint, tmp_path):
    """The tiny checkpoint with a non-zero TokenFuser token map, so the TokenLearner path counts."""
    state = read_checkpoint(checkpoint)
    for key, value in state["model"].items():
        if key.endswith("token_mix.weight"):
            state["model"][key] = torch.randn_like(value) * 0.5
    path = tmp_path / "trained.pyth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize("format", ["torchscript", "export", "onnx"])
def test_export_round_trip(format, tiny_trained, tmp_path, capsys):
    _, _, checkpoint = tiny_trained
    checkpoint = _perturbed_checkpoint(checkpoint, tmp_path)
    out = tmp_path / f"model.{format}"
    assert tool.main(["--checkpoint", str(checkpoint), "--format", format, "--out", str(out), "DEVICE", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "max |exported - eager|" in printed and out.is_file()
    error = float(printed.rsplit("=", 1)[1])
    assert error <= 1e-4


def test_round_trip_detects_a_different_model(tiny_trained, tmp_path):
    import videotl

    _, _, checkpoint = tiny_trained
    model = videotl.load_model(_perturbed_checkpoint(checkpoint, tmp_path), device="cpu")
    example = torch.randn(1, 3, 8, 64, 64)
    path = export_model(model, example, tmp_path / "m.pt2", format="export")
    assert round_trip_error(model, path, example, format="export") <= 1e-5
    with torch.no_grad():
        model.head.proj.bias.add_(0.1)
    assert round_trip_error(model, path, example, format="export") == pytest.approx(0.1, abs=1e-5)
    assert load_exported(path, format="export")(example).shape == (1, model.num_classes)


def test_export_of_a_named_model_with_random_weights(tmp_path, capsys):
    from videotl.models import MODELS, register_model
    from videotl.models.x3d_models import CHARADES_MODEL, x2plus1d

    @register_model(default_cfg={"num_frames": 8, "test_crop_size": 64, "num_classes": 5})
    def tiny_export_net(**kwargs):
        """A tiny Charades-style TokenLearner model."""
        widths = dict(stem_dim=4, stage_dims=(4, 8, 8, 16), stage_depths=(1, 1, 1, 3), conv5_dim=24, head_dim=32)
        return x2plus1d(
            **{**CHARADES_MODEL, **widths, "res5_converted_blocks": (1, 2), "num_classes": 5, "num_frames": 8, **kwargs}
        )

    try:
        model = tool._random_model("tiny_export_net")
        # The zero-initialised token map is drawn, so the TokenLearner path reaches the output.
        mixes = [p for n, p in model.named_parameters() if n.endswith("token_mix.weight")]
        assert mixes and all(bool(p.abs().min() > 0) for p in mixes)
        out = tmp_path / "tiny.pt2"
        assert tool.main(["--model", "tiny_export_net", "--format", "export", "--out", str(out)]) == 0
        printed = capsys.readouterr().out
        assert "input (1, 3, 8, 64, 64)" in printed and out.is_file()
        assert float(printed.rsplit("=", 1)[1]) <= 1e-4
        assert tool.main(["--model", "tiny_export_net", "--format", "export", "MODEL.NUM_CLASSES", "3"]) == 1
        assert "no --cfg or KEY VALUE overrides" in capsys.readouterr().err
    finally:
        MODELS.unregister("tiny_export_net")
