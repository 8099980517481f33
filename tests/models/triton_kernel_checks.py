"""The Triton vector attention kernels against eq. 3 computed naively in float64.

Not collected by a plain ``pytest tests`` (the file name does not start with ``test_``): Triton's
CPU interpreter must be switched on before triton is first imported, so
``test_vector_attention_triton.py`` runs this file in a fresh process with ``TRITON_INTERPRET=1``.
On a CUDA machine it runs on the GPU as it is::

    TRITON_INTERPRET=1 python -m pytest tests/models/triton_kernel_checks.py   # CPU, interpreted
    python -m pytest tests/models/triton_kernel_checks.py                      # CUDA, compiled
"""

import os

import pytest
import torch

from videotl.models import vector_attention_triton
from videotl.models.vector_transformer import VectorAttention, vector_attention, vector_attention_naive

INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
if not vector_attention_triton.triton_installed():
    pytest.skip("triton is not installed", allow_module_level=True)
if not (INTERPRETED or torch.cuda.is_available()):
    pytest.skip("needs CUDA, or TRITON_INTERPRET=1 set before triton is imported", allow_module_level=True)

DEVICE = "cpu" if INTERPRETED else "cuda"


def _inputs(batch, n_q, n_k, dim, *, dtype=torch.float32, scale=1.0, seed=0):
    generator = torch.Generator().manual_seed(seed)
    q = torch.randn(batch, n_q, dim, generator=generator) * scale
    k = torch.randn(batch, n_k, dim, generator=generator) * scale
    v = torch.randn(batch, n_k, dim, generator=generator)
    grad = torch.randn(batch, n_q, dim, generator=generator)
    return [t.to(DEVICE, dtype) for t in (q, k, v, grad)]


def _naive_float64(q, k, v, grad):
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    out = vector_attention_naive(*leaves)
    return out, torch.autograd.grad(out, leaves, grad.double())


def _assert_matches(got_out, got_grads, q, k, v, grad, *, atol, rtol, grad_atol=None):
    want_out, want_grads = _naive_float64(q, k, v, grad)
    torch.testing.assert_close(got_out.double(), want_out, atol=atol, rtol=rtol)
    for name, got, want in zip("qkv", got_grads, want_grads):
        torch.testing.assert_close(
            got.double(), want, atol=grad_atol or atol, rtol=rtol, msg=lambda m, name=name: f"grad {name}: {m}"
        )


# (batch, queries, keys, channels): rows and channels that do not fill a block (the blocks are 4-64
# rows and 16 or 32 channels), exactly full blocks, one query, more keys than queries, and the
# paper's d = 432 (not a power of two) at a few tokens.
SHAPES = {
    "ragged": (2, 37, 37, 27),
    "full_blocks": (2, 64, 64, 32),
    "one_token": (3, 1, 1, 5),
    "more_keys": (1, 9, 41, 20),
    "width_432": (1, 6, 6, 432),
    # Five clips of two row blocks each share grid axis 0: each program must find its own clip.
    "five_clips": (5, 19, 23, 9),
}


@pytest.mark.parametrize("config", vector_attention_triton.CONFIGS, ids=str)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
def test_every_block_config_matches_naive(config, dtype):
    q, k, v, grad = _inputs(2, 37, 29, 27, dtype=dtype)
    out, lse = vector_attention_triton.forward(q, k, v, config=config)
    grads = vector_attention_triton.backward(q, k, v, out, lse, grad, config=config)
    assert out.dtype == lse.dtype == dtype and all(g.dtype == dtype for g in grads)
    tolerance = 1e-12 if dtype == torch.float64 else 1e-5
    _assert_matches(out, grads, q, k, v, grad, atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
def test_shapes_match_naive_through_autograd(shape):
    q, k, v, grad = _inputs(*shape, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = vector_attention(*leaves, implementation="triton")
    grads = torch.autograd.grad(out, leaves, grad)
    _assert_matches(out, grads, q, k, v, grad, atol=1e-12, rtol=1e-12)


def test_log_sum_exp_is_saved_exactly():
    q, k, v, _ = _inputs(2, 11, 11, 7, dtype=torch.float64)
    _, lse = vector_attention_triton.forward(q, k, v)
    expected = torch.logsumexp(q.unsqueeze(2) * k.unsqueeze(1), dim=2)
    torch.testing.assert_close(lse, expected, atol=1e-12, rtol=1e-12)


def test_peaked_softmaxes_stay_exact():
    # Logits of several hundred: exp overflows without the peak, and most weights underflow.
    q, k, v, grad = _inputs(2, 24, 24, 10, scale=20.0)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out = vector_attention(*leaves, implementation="triton")
    grads = torch.autograd.grad(out, leaves, grad)
    assert torch.isfinite(out).all() and all(torch.isfinite(g).all() for g in grads)
    _assert_matches(out, grads, q, k, v, grad, atol=1e-5, rtol=1e-5, grad_atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bfloat16", "float16"])
def test_half_inputs_accumulate_in_float32(dtype):
    # The kernels read half-precision q, k, v and compute in float32: the output equals eq. 3 on
    # the same (rounded) inputs to float32 accuracy, far closer than a half-precision softmax would.
    q, k, v, grad = _inputs(2, 37, 37, 27, dtype=dtype)
    out, lse = vector_attention_triton.forward(q, k, v)
    assert out.dtype == lse.dtype == torch.float32
    grads = vector_attention_triton.backward(q, k, v, out, lse, grad)
    assert all(g.dtype == dtype for g in grads)
    want_out, want_grads = _naive_float64(q, k, v, grad)
    torch.testing.assert_close(out.double(), want_out, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, want_grads):
        # One rounding to the half dtype at the end.
        torch.testing.assert_close(got.double(), want, atol=1e-2, rtol=1e-2)
    # The public function returns the inputs' dtype, as any op under autocast does.
    assert vector_attention(q, k, v, implementation="triton").dtype == dtype


def test_operator_registration_passes_opcheck():
    q, k, v, _ = _inputs(2, 9, 9, 5)
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    torch.library.opcheck(torch.ops.videotl.vector_attention.default, (q, k, v, "triton", 64))


def test_compiled_module_calls_the_kernels_without_graph_breaks():
    torch.manual_seed(0)
    module = VectorAttention(dim=12, attention_dim=20, implementation="triton").to(DEVICE)
    z = torch.randn(2, 10, 12, device=DEVICE)
    expected = module(z)
    expected.sum().backward()
    expected_grads = [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    # fullgraph=True fails on any graph break; aot_eager traces forward and backward through the
    # operator's fake and autograd registrations without needing a compiler.
    compiled = torch.compile(module, fullgraph=True, backend="aot_eager" if INTERPRETED else "inductor")
    out = compiled(z)
    out.sum().backward()
    torch.testing.assert_close(out, expected)
    for got, want in zip((p.grad for p in module.parameters()), expected_grads):
        torch.testing.assert_close(got, want)


def test_no_keys_gives_the_empty_sums():
    q = torch.randn(2, 5, 6, device=DEVICE, requires_grad=True)
    k, v = (torch.randn(2, 0, 6, device=DEVICE, requires_grad=True) for _ in range(2))
    out, lse = vector_attention_triton.forward(q, k, v)
    assert torch.equal(out, torch.zeros_like(out)) and bool((lse == -float("inf")).all())
    out = vector_attention(q, k, v, implementation="triton")
    assert torch.equal(out, vector_attention_naive(q, k, v))
    out.sum().backward()
    assert torch.equal(q.grad, torch.zeros_like(q)) and k.grad.shape == k.shape


@pytest.mark.skipif(not INTERPRETED, reason="records the interpreter's launches")
def test_a_batch_past_65535_launches_within_cudas_grid_limits(monkeypatch):
    # CUDA launches at most 2^31 - 1 programs on grid axis 0 and 65,535 on axes 1 and 2. The
    # launches are recorded, not run: 70,000 interpreted programs would take minutes.
    from triton.runtime import interpreter

    grids = []

    def record(self, *args, **kwargs):
        grid = self.grid(kwargs) if callable(self.grid) else self.grid
        grids.append(tuple(grid) + (1,) * (3 - len(grid)))

    monkeypatch.setattr(interpreter.GridExecutor, "__call__", record)
    q, k, v, grad = (torch.zeros(70_000, 1, 1) for _ in range(4))
    out, lse = vector_attention_triton.forward(q, k, v)
    vector_attention_triton.backward(q, k, v, out, lse, grad)
    assert len(grids) == 3, grids  # forward, grad q, grad k and v
    for grid in grids:
        assert grid[0] <= 2**31 - 1 and grid[1] <= 65535 and grid[2] <= 65535, grids
        assert grid[0] * grid[1] * grid[2] >= 70_000, grids  # at least a program per clip


@pytest.mark.skipif(not INTERPRETED, reason="times the block configs with made-up numbers")
def test_forward_does_not_depend_on_what_timing_this_process_measured(monkeypatch):
    # Each rank of a distributed run (and each new run) times block configs on its own; noise then
    # decides. Here each pass sees other made-up timings, taking the code path CUDA takes.
    import random

    from triton.runtime import autotuner

    q, k, v, _ = _inputs(2, 37, 37, 27)
    outputs = []
    kernels = vector_attention_triton._kernels
    # The kernels a compiled (not interpreted) process builds; they still run interpreted here.
    monkeypatch.setattr(vector_attention_triton, "_kernels", lambda interpreted: kernels(False))
    try:
        for seed in range(3):
            timings = random.Random(seed)
            fake_bench = lambda self, *a, config, timings=timings, **m: [timings.random()] * 3  # noqa: E731
            monkeypatch.setattr(autotuner.Autotuner, "_bench", fake_bench)
            kernels.cache_clear()
            outputs.append(vector_attention_triton.forward(q, k, v)[0])
    finally:
        kernels.cache_clear()
    assert all(torch.equal(outputs[0], out) for out in outputs[1:])
