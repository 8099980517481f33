"""The Triton kernels under Triton's CPU interpreter, and how the Vector Transformer picks its kernels."""

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videotl.models import vector_attention_cpu, vector_attention_triton
from videotl.models.vector_transformer import (
    VectorAttention,
    resolve_implementation,
    vector_attention,
    vector_attention_naive,
)

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


@pytest.mark.parametrize("implementation", ["auto", "pytorch"])
@pytest.mark.parametrize("n_q, n_k", [(5, 0), (0, 4), (0, 0)], ids=["no_keys", "no_queries", "neither"])
def test_nothing_to_attend_to_gives_the_empty_sums(implementation, n_q, n_k):
    # Eq. 3 over zero keys: the naive form's sum over nothing is 0, and no gradient flows.
    q = torch.randn(2, n_q, 6, requires_grad=True)
    k, v = (torch.randn(2, n_k, 6, requires_grad=True) for _ in range(2))
    out = vector_attention(q, k, v, implementation=implementation)
    assert torch.equal(out, torch.zeros(2, n_q, 6)) and torch.equal(out, vector_attention_naive(q, k, v))
    raw_out, lse = torch.ops.videotl.vector_attention(q, k, v, implementation, 64)
    assert torch.equal(raw_out, out) and bool((lse == -math.inf).all())
    out.sum().backward()
    for leaf in (q, k, v):
        assert torch.equal(leaf.grad, torch.zeros_like(leaf))


def test_launch_grid_fits_any_batch_within_cudas_limits():
    # CUDA launches at most 2^31 - 1 programs on grid axis 0 and 65,535 on axes 1 and 2.
    for config in vector_attention_triton.CONFIGS:
        grid = vector_attention_triton.launch_grid(
            5, 3, 70_000, block_rows=config.block_rows, block_channels=config.block_channels
        )
        # 5 rows are one block of any size, 3 channels one block: one program per clip.
        assert grid == (70_000, 1, 1)
    assert vector_attention_triton.launch_grid(37, 432, 3, block_rows=16, block_channels=32) == (3 * 3, 14, 1)
    with pytest.raises(
        ValueError, match=r"1,048,577 channels needs 65,537 programs on grid axis 1, more than CUDA's 65,535"
    ):
        vector_attention_triton.launch_grid(1, 16 * 65536 + 1, 1, block_rows=16, block_channels=16)


def test_pinned_config_is_the_least_padded_for_the_shape():
    configs = vector_attention_triton.CONFIGS
    pinned = vector_attention_triton.pinned_config
    # 512 tokens x d = 432 (the paper's res5): no padding with 16 channels, so the first of those.
    assert pinned(512, 512, 432) == configs[0]
    # 37 tokens, 27 channels (32 padded either way): 16 x 8 blocks pad 37 to 48 x 40, the least.
    assert pinned(37, 37, 27) == vector_attention_triton.KernelConfig(16, 8, 32, 4)
    # One token: every config pads to 12,288 lanes (e.g. 16 x 16 x 16 x 3 kernels): the first wins.
    assert pinned(1, 1, 5) == configs[0]
