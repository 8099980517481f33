"""The fused CPU kernels of the Vector Transformer against eq. 3 computed naively in float64."""

import logging

import pytest
import torch

from videotl.models import vector_attention_cpu
from videotl.models.vector_transformer import vector_attention_chunked, vector_attention_naive
from videotl.utils.native import find_compiler

needs_compiler = pytest.mark.skipif(find_compiler() is None, reason="no C compiler: the kernels cannot be built here")


@pytest.fixture(scope="module")
def portable_kernels(tmp_path_factory):
    """The kernels built without -march=native: the plain C path that machines without AVX-512 run."""
    compiler = find_compiler()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VIDEOTL_CACHE_DIR", str(tmp_path_factory.mktemp("portable")))
        return vector_attention_cpu.open_kernels(vector_attention_cpu.build_kernels(compiler, flag_sets=((),)))


@pytest.fixture(params=["native", "portable"])
def kernel_build(request, monkeypatch):
    """Runs a test with the machine's own build and again with the portable one."""
    if request.param == "portable":
        library = request.getfixturevalue("portable_kernels")
        monkeypatch.setattr(vector_attention_cpu, "load_kernels", lambda: library)
    return request.param


def _naive_float64(q, k, v, grad):
    leaves = [t.detach().double().requires_grad_() for t in (q, k, v)]
    out = vector_attention_naive(*leaves)
    return out, torch.autograd.grad(out, leaves, grad.double())


def _fused(q, k, v, grad):
    leaves = [t.detach().clone().requires_grad_() for t in (q, k, v)]
    out = vector_attention_chunked(*leaves)
    return out, torch.autograd.grad(out, leaves, grad)


@needs_compiler
@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize(
    "shape",
    # Query counts that do not fill the kernels' row blocks (8 rows in plain C, 3-4 with AVX-512),
    # blocks and thread ranges that would cross into the next clip, widths that are not a multiple
    # of the vector width (16 channels), and more keys than queries.
    [(3, 13, 21, 21), (2, 8, 16, 16), (1, 40, 7, 40)],
    ids=["ragged", "aligned", "more_keys"],
)
def test_kernels_match_naive_float64(shape, threads, kernel_build, monkeypatch):
    batch, n_q, dim, n_k = shape
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    torch.manual_seed(0)
    q, v_grad = torch.randn(batch, n_q, dim), torch.randn(batch, n_q, dim)
    k, v = torch.randn(batch, n_k, dim), torch.randn(batch, n_k, dim)
    assert vector_attention_cpu.kernels_apply(q, k, v)
    out, grads = _fused(q, k, v, v_grad)
    expected, expected_grads = _naive_float64(q, k, v, v_grad)
    torch.testing.assert_close(out.double(), expected, atol=2e-6, rtol=1e-5)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want, atol=1e-5, rtol=1e-5)


@needs_compiler
def test_kernels_keep_peaked_softmaxes_exact(kernel_build):
    # Logits of several hundred: exp overflows without the peak, and most weights underflow.
    torch.manual_seed(1)
    q, k, v, grad = (torch.randn(2, 24, 10) * scale for scale in (20.0, 20.0, 1.0, 1.0))
    out, grads = _fused(q, k, v, grad)
    expected, expected_grads = _naive_float64(q, k, v, grad)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    for got, want in zip(grads, expected_grads):
        torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)


def test_kernels_do_not_apply_to_float64_or_when_disabled(monkeypatch):
    x = torch.zeros(1, 2, 2, dtype=torch.float64)
    assert not vector_attention_cpu.kernels_apply(x)
    monkeypatch.setenv("VIDEOTL_CPU_KERNELS", "0")
    vector_attention_cpu.load_kernels.cache_clear()
    try:
        assert vector_attention_cpu.load_kernels() is None
        assert not vector_attention_cpu.kernels_apply(x.float())
    finally:
        vector_attention_cpu.load_kernels.cache_clear()


@needs_compiler
def test_build_is_cached_per_source_and_atomic(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOTL_CACHE_DIR", str(tmp_path))
    compiler = find_compiler()
    built = vector_attention_cpu.build_kernels(compiler)
    assert built.parent == tmp_path / "kernels" and built.suffix == ".so"
    stamp = built.stat().st_mtime_ns
    assert vector_attention_cpu.build_kernels(compiler) == built
    assert built.stat().st_mtime_ns == stamp  # not rebuilt
    assert [p.name for p in built.parent.iterdir()] == [built.name]  # no scratch file left


def test_failed_build_warns_and_falls_back_to_pytorch_ops(tmp_path, monkeypatch):
    failing = tmp_path / "failing-cc"
    failing.write_text("#!/bin/sh\necho 'cc: fatal error: no input' >&2\nexit 1\n")
    failing.chmod(0o755)
    monkeypatch.setenv("VIDEOTL_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(failing))
    with pytest.raises(RuntimeError, match="no input"):
        vector_attention_cpu.build_kernels(str(failing))
    vector_attention_cpu.load_kernels.cache_clear()
    # A handler on the module's own logger: other tests may reconfigure the "videotl" logger.
    warnings = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())
    logger = logging.getLogger("videotl.models.vector_attention_cpu")
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "propagate", False)
    try:
        assert vector_attention_cpu.load_kernels() is None
        assert len(warnings) == 1 and "PyTorch ops" in warnings[0] and "no input" in warnings[0]
        q, k, v = (torch.randn(1, 5, 3) for _ in range(3))
        torch.testing.assert_close(vector_attention_chunked(q, k, v), vector_attention_naive(q, k, v))
    finally:
        logger.removeHandler(handler)
        vector_attention_cpu.load_kernels.cache_clear()
    assert not list((tmp_path / "cache" / "kernels").glob("*.tmp"))
