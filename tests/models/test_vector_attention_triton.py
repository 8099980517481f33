"""The Triton kernels under Triton's CPU interpreter, and how the Vector Transformer picks its kernels."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videotl.models import vector_attention_cpu, vector_attention_triton
from videotl.models.vector_transformer import VectorAttention, resolve_implementation, vector_attention

CHECKS = Path(__file__).with_name("triton_kernel_checks.py")


@pytest.mark.skipif(not vector_attention_triton.triton_installed(), reason="triton is not installed")
def test_triton_kernels_match_naive_under_the_interpreter():
    """Runs ``triton_kernel_checks.py`` in a fresh process: the interpreter must be on before triton
    is imported, which this process may already have done."""
    env = dict(os.environ, TRITON_INTERPRET="1", OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", str(CHECKS)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=CHECKS.parents[2])
    tail = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, tail
    summary = result.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary and "failed" not in summary, tail


def _qkv(dtype=torch.float32):
    return [torch.randn(2, 9, 5, dtype=dtype) for _ in range(3)]


def test_auto_keeps_the_cpu_kernels_on_cpu():
    expected = "cpu_kernels" if vector_attention_cpu.load_kernels() is not None else "pytorch"
    assert resolve_implementation("auto", *_qkv()) == expected
    # The C kernels are float32 only; float64 runs the PyTorch ops, half inputs compute in float32.
    assert resolve_implementation("auto", *_qkv(torch.float64)) == "pytorch"
    assert resolve_implementation("auto", *_qkv(torch.bfloat16)) == expected
    assert resolve_implementation("pytorch", *_qkv()) == "pytorch"


@pytest.mark.skipif(vector_attention_triton.interpreting(), reason="the interpreter runs Triton on CPU")
def test_triton_on_cpu_without_the_interpreter_says_what_it_needs():
    with pytest.raises(RuntimeError, match="CUDA tensors .*TRITON_INTERPRET=1"):
        vector_attention(*_qkv(), implementation="triton")


def test_module_rejects_unknown_and_conflicting_implementations():
    with pytest.raises(ValueError, match="'auto', 'triton', 'pytorch'"):
        VectorAttention(dim=4, implementation="cuda")
    with pytest.raises(ValueError, match="chunk_size = 0 builds the naive"):
        VectorAttention(dim=4, chunk_size=0, implementation="triton")


@pytest.mark.parametrize("implementation", ["auto", "pytorch"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_cpu_operator_registration_passes_opcheck(implementation, dtype):
    # Schema, fake (meta) kernel, autograd registration and AOT dispatch: what torch.compile relies on.
    q, k, v = (t.requires_grad_() for t in _qkv(dtype))
    torch.library.opcheck(torch.ops.videotl.vector_attention.default, (q, k, v, implementation, 4))


def test_pytorch_ops_equal_the_cpu_kernels():
    torch.manual_seed(3)
    q, k, v = (torch.randn(2, 21, 13, requires_grad=True) for _ in range(3))
    grad = torch.randn(2, 21, 13)
    results = []
    for implementation in ("auto", "pytorch"):
        out = vector_attention(q, k, v, implementation=implementation, chunk_size=5)
        results.append((out, *torch.autograd.grad(out, (q, k, v), grad)))
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
