"""Mixed precision (TRAIN.AMP_DTYPE) and MODEL.COMPILE in training and evaluation."""

import fakes
import pytest
import torch
from torch import nn

from videotl import engine
from videotl.config import ConfigError, load_config
from videotl.engine import precision, trainer
from videotl.engine.checkpoint import last_checkpoint, read_checkpoint

CUDA = torch.device("cuda", 0)


def _cfg(tmp_path, *overrides):
    return load_config("", fakes.TINY + ["OUTPUT_DIR", str(tmp_path / "run"), "SOLVER.MAX_EPOCH", "1", *overrides])


@pytest.mark.parametrize(
    "name, native_bfloat16, expected",
    [
        ("auto", True, torch.bfloat16),
        ("auto", False, torch.float16),
        ("bfloat16", True, torch.bfloat16),
        ("float16", True, torch.float16),
        ("float16", False, torch.float16),
    ],
)
def test_amp_dtype_prefers_bfloat16_where_the_gpu_has_it(name, native_bfloat16, expected, monkeypatch):
    monkeypatch.setattr(precision, "bfloat16_supported", lambda device: native_bfloat16)
    assert precision.resolve_amp_dtype(name, enabled=True, device=CUDA) == expected
    assert precision.needs_grad_scaler(expected) == (expected == torch.float16)


def test_amp_is_off_on_cpu_and_when_disabled(monkeypatch):
    monkeypatch.setattr(precision, "bfloat16_supported", lambda device: True)
    assert precision.resolve_amp_dtype("bfloat16", enabled=True, device=torch.device("cpu")) is None
    assert precision.resolve_amp_dtype("auto", enabled=False, device=CUDA) is None
    assert not precision.needs_grad_scaler(None)


def test_bfloat16_on_a_gpu_without_it_names_the_key(monkeypatch):
    monkeypatch.setattr(precision, "bfloat16_supported", lambda device: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Tesla V100")
    with pytest.raises(ConfigError, match="TRAIN.AMP_DTYPE = 'bfloat16', but Tesla V100 has no native bfloat16"):
        precision.resolve_amp_dtype("bfloat16", enabled=True, device=CUDA)


class _DtypeRecorder(fakes.TinyVideoNet):
    """The fake network, recording the dtype its convolution computes in, per mode."""

    seen: dict = {}

    def forward(self, x):
        _DtypeRecorder.seen.setdefault("train" if self.training else "eval", set()).add(self.conv(x).dtype)
        return super().forward(x)


def test_training_and_evaluation_run_under_the_same_autocast(tmp_path, monkeypatch):
    # CPU autocast stands in for CUDA's: the engine must enter it for training steps and for the
    # evaluation during training, and build the gradient scaler for float16 only.
    _DtypeRecorder.seen = {}
    scalers = []
    real_scaler = torch.amp.GradScaler

    def recording_scaler(device, *, enabled):
        scalers.append(enabled)
        return real_scaler(device, enabled=False)

    monkeypatch.setattr(trainer, "resolve_amp_dtype", lambda name, *, enabled, device: torch.bfloat16)
    monkeypatch.setattr(torch.amp, "GradScaler", recording_scaler)
    cfg = _cfg(tmp_path, "TRAIN.EVAL_PERIOD", "1")
    engine.train(cfg, build_model_fn=lambda c: _DtypeRecorder(c.MODEL.NUM_CLASSES), build_loader_fn=fakes.build_loader)
    assert _DtypeRecorder.seen == {"train": {torch.bfloat16}, "eval": {torch.bfloat16}}
    assert scalers == [False]
    state = read_checkpoint(last_checkpoint(cfg.OUTPUT_DIR))
    assert state["scaler"] == {}

    _DtypeRecorder.seen = {}
    monkeypatch.setattr(trainer, "resolve_amp_dtype", lambda name, *, enabled, device: None)
    engine.test(cfg, build_model_fn=lambda c: _DtypeRecorder(c.MODEL.NUM_CLASSES), build_loader_fn=fakes.build_loader)
    assert _DtypeRecorder.seen == {"eval": {torch.float32}}


def test_float16_builds_the_gradient_scaler(tmp_path, monkeypatch):
    scalers = []
    real_scaler = torch.amp.GradScaler

    def recording_scaler(device, *, enabled):
        scalers.append(enabled)
        return real_scaler(device, enabled=False)  # no CUDA here: a real one would disable itself anyway

    monkeypatch.setattr(trainer, "resolve_amp_dtype", lambda name, *, enabled, device: torch.float16)
    monkeypatch.setattr(torch.amp, "GradScaler", recording_scaler)
    engine.train(
        _cfg(tmp_path, "TRAIN.EVAL_PERIOD", "0"), build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader
    )
    assert scalers == [True]


def test_compiled_training_equals_eager_training(tmp_path, monkeypatch):
    # aot_eager runs the captured forward and backward graphs with eager kernels: the same numbers
    # as eager mode, bit for bit on CPU, without a C++ compile in the test.
    monkeypatch.setitem(trainer.COMPILE_OPTIONS, "backend", "aot_eager")
    eager = engine.train(_cfg(tmp_path / "eager"), build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)
    torch._dynamo.reset()
    compiled_calls = []
    real_compile = nn.Module.compile

    def recording_compile(self, **options):
        compiled_calls.append(options)
        return real_compile(self, **options)

    monkeypatch.setattr(nn.Module, "compile", recording_compile)
    cfg = _cfg(tmp_path / "compiled", "MODEL.COMPILE", "True")
    compiled = engine.train(cfg, build_model_fn=fakes.build_model, build_loader_fn=fakes.build_loader)
    assert compiled_calls == [{"dynamic": False, "backend": "aot_eager"}]
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # train and eval modes
    assert compiled["metrics"] == eager["metrics"]
    # In-place compilation leaves the checkpoint's keys as they are (no "_orig_mod." prefix).
    state = read_checkpoint(last_checkpoint(cfg.OUTPUT_DIR))
    assert set(state["model"]) == set(fakes.build_model(cfg).state_dict())


def test_compiled_ddp_model_splits_its_graph_at_the_gradient_buckets(tmp_path, monkeypatch):
    # The Charades TokenLearner network at tiny widths in a gloo group of one. DDPOptimizer only
    # applies where dynamo compiles inside DDP's forward; it then compiles one graph per bucket of
    # parameters (buckets of 0.05 MB here, against 0.25 MB of parameters), where one compile
    # outside DDP would give a single graph (the network traces without graph breaks).
    import functools

    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    from tests.models.conftest import TINY_X3D
    from videotl.engine.checkpoint import unwrap_model
    from videotl.models import build_model

    graphs = []

    def counting_backend(graph_module, example_inputs):
        graphs.append(graph_module)
        return graph_module.forward

    monkeypatch.setitem(trainer.COMPILE_OPTIONS, "backend", counting_backend)
    monkeypatch.setattr(
        trainer, "DistributedDataParallel", functools.partial(DistributedDataParallel, bucket_cap_mb=0.05)
    )
    # DDPOptimizer refuses buckets smaller than DDP's first one.
    monkeypatch.setattr(dist, "_DEFAULT_FIRST_BUCKET_BYTES", int(0.05 * 2**20))
    cfg = load_config("configs/charades_12fps.yaml", [*TINY_X3D, "MODEL.COMPILE", "True", "DEVICE", "cpu"])
    torch.manual_seed(0)
    model = build_model(cfg).train()
    eager = build_model(cfg).train()
    eager.load_state_dict(model.state_dict())
    clip = torch.randn(2, 3, 4, 64, 64)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch._dynamo.reset()
        wrapped = trainer._for_training(model, cfg, device=torch.device("cpu"), distributed=True)
        assert isinstance(wrapped, DistributedDataParallel) and unwrap_model(wrapped) is model
        torch.manual_seed(1)  # the same dropout draws as the eager pass below
        wrapped(clip).square().sum().backward()
    finally:
        dist.destroy_process_group()
        torch._dynamo.reset()
    assert len(graphs) > 1, "one graph: the compiled forward was not split at DDP's buckets"
    torch.manual_seed(1)
    eager(clip).square().sum().backward()
    for (name, got), want in zip(model.named_parameters(), eager.parameters()):
        torch.testing.assert_close(got.grad, want.grad, msg=lambda m, name=name: f"{name}: {m}")
    # What a checkpoint holds: the bare module's names, without "_orig_mod." or "module.".
    assert list(unwrap_model(wrapped).state_dict()) == list(build_model(cfg).state_dict())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_only_settings_with_device_auto_on_a_cpu_machine(tmp_path):
    cfg = load_config("", [*fakes.TINY, "DEVICE", "auto", "OUTPUT_DIR", str(tmp_path), "TRAIN.AMP_DTYPE", "float16"])
    with pytest.raises(ConfigError, match="TRAIN.AMP_DTYPE = 'float16' needs CUDA .*DEVICE = 'auto' finds no CUDA"):
        engine.setup_run(cfg)
