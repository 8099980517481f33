"""The Vector Transformer (appendix eq. 3): loop reference, naive and chunked implementations."""

import pytest
import torch

from videotl.models import VectorAttention, vector_attention_chunked, vector_attention_naive


def _eq3_loop(q, k, v):
    batch, n, d = q.shape
    out = torch.zeros_like(q)
    for b in range(batch):
        for i in range(n):
            for c in range(d):
                weights = torch.softmax(torch.stack([q[b, i, c] * k[b, j, c] for j in range(n)]), dim=0)
                out[b, i, c] = sum(weights[j] * v[b, j, c] for j in range(n))
    return out


def test_naive_matches_eq3_loop():
    q, k, v = (torch.randn(2, 5, 3, dtype=torch.float64) for _ in range(3))
    torch.testing.assert_close(vector_attention_naive(q, k, v), _eq3_loop(q, k, v))


def test_one_head_per_channel_equals_mhsa_with_d_heads():
    # "MHSA with the number of heads identical to the number of channels" (section 6.1), unscaled.
    q, k, v = (torch.randn(2, 6, 4, dtype=torch.float64) for _ in range(3))

    def heads(x):  # (B, d, N, 1): one head of width 1 per channel
        return x.transpose(1, 2).unsqueeze(-1)

    mhsa = torch.softmax(heads(q) @ heads(k).transpose(-1, -2), dim=-1) @ heads(v)
    torch.testing.assert_close(vector_attention_naive(q, k, v), mhsa.squeeze(-1).transpose(1, 2))


@pytest.mark.parametrize("chunk_size", [1, 7, 64])
@pytest.mark.parametrize("cpu_kernels", [False, True], ids=["pytorch_ops", "cpu_kernels"])
def test_chunked_equals_naive_outputs_and_gradients(chunk_size, cpu_kernels):
    # The tolerance (1e-5) at a size where float32 rounding is realistic.
    torch.manual_seed(1)
    shape = (2, 40, 24)
    q, k, v = (torch.randn(*shape, requires_grad=True) for _ in range(3))
    grad = torch.randn(*shape)
    naive = vector_attention_naive(q, k, v)
    naive_grads = torch.autograd.grad(naive, (q, k, v), grad)
    chunked = vector_attention_chunked(q, k, v, chunk_size=chunk_size, cpu_kernels=cpu_kernels)
    chunked_grads = torch.autograd.grad(chunked, (q, k, v), grad)
    torch.testing.assert_close(chunked, naive, atol=1e-5, rtol=1e-5)
    for a, b in zip(chunked_grads, naive_grads):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_chunked_gradcheck_float64():
    q, k, v = (torch.randn(1, 9, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: vector_attention_chunked(a, b, c, chunk_size=4), (q, k, v))


def test_chunked_saves_no_pairwise_tensor():
    """The chunked forward keeps O(N d) for backward, the naive one O(N^2 d)."""
    n, d = 64, 16
    saved = {}

    def bytes_saved(fn):
        total = [0]

        def pack(t):
            total[0] += t.numel() * t.element_size()
            return t

        q, k, v = (torch.randn(1, n, d, requires_grad=True) for _ in range(3))
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn(q, k, v)
        return total[0]

    saved["naive"] = bytes_saved(vector_attention_naive)
    saved["chunked"] = bytes_saved(lambda q, k, v: vector_attention_chunked(q, k, v, chunk_size=8, cpu_kernels=False))
    saved["cpu_kernels"] = bytes_saved(lambda q, k, v: vector_attention_chunked(q, k, v, cpu_kernels=True))
    pairwise = n * n * d * 4
    assert saved["naive"] >= pairwise
    assert saved["chunked"] <= 5 * n * d * 4  # q, k, v, out, logsumexp
    assert saved["cpu_kernels"] <= 5 * n * d * 4


def test_vector_attention_module_projection_only_when_widths_differ():
    same = VectorAttention(dim=8, attention_dim=8, chunk_size=0)
    assert isinstance(same.gamma, torch.nn.Identity)
    other = VectorAttention(dim=8, attention_dim=12, chunk_size=4)
    assert other(torch.randn(2, 10, 8)).shape == (2, 10, 8)
    assert other.gamma.weight.shape == (8, 12)


def test_softmax_peak_equals_amax_of_all_products_exactly():
    from videotl.models.vector_transformer import softmax_peak

    q, k = torch.randn(3, 17, 11) * 7, torch.randn(3, 23, 11) * 7
    q[0, 0] = 0.0  # a zero query: peak 0 whichever extreme of k it takes
    expected = (q.unsqueeze(2) * k.unsqueeze(1)).amax(dim=2)
    assert torch.equal(softmax_peak(q, k), expected)


def _eq3_projected_loop(q, k, v, gamma):
    """Eq. 3 with gamma a linear map over channels inside the softmax, one output at a time:
    y_ic = sum_j softmax_j(sum_d gamma_cd q_id k_jd) v_jc."""
    batch, n, _ = q.shape
    rows = []
    for b in range(batch):
        for i in range(n):
            outputs = []
            for c in range(v.shape[-1]):
                logits = torch.stack([(gamma[c] * q[b, i] * k[b, j]).sum() for j in range(n)])
                outputs.append((torch.softmax(logits, dim=0) * v[b, :, c]).sum())
            rows.append(torch.stack(outputs))
    return torch.stack(rows).reshape(batch, n, -1)


@pytest.mark.parametrize("chunk_size", [0, 2, 64], ids=["naive", "chunk2", "chunk64"])
def test_unequal_widths_apply_gamma_inside_the_softmax(chunk_size):
    torch.manual_seed(3)
    module = VectorAttention(dim=6, attention_dim=4, chunk_size=chunk_size).double()
    z = torch.randn(2, 5, 6, dtype=torch.float64, requires_grad=True)
    grad = torch.randn(2, 5, 6, dtype=torch.float64)
    out = module(z)
    reference = _eq3_projected_loop(module.f_q(z), module.f_k(z), module.f_v(z), module.gamma.weight)
    torch.testing.assert_close(out, reference)
    inputs = (z, *module.parameters())  # f_q, f_k, f_v, gamma
    for ours, theirs in zip(torch.autograd.grad(out, inputs, grad), torch.autograd.grad(reference, inputs, grad)):
        torch.testing.assert_close(ours, theirs)


def test_fused_kernels_and_the_equal_width_path_refuse_unequal_widths():
    from videotl.models import vector_attention_cpu

    q, k, v = torch.randn(1, 5, 4), torch.randn(1, 5, 4), torch.randn(1, 5, 6)
    with pytest.raises(ValueError, match=r"one width d; got q \(1, 5, 4\), k \(1, 5, 4\), v \(1, 5, 6\)"):
        vector_attention_cpu.fused_forward(q, k, v)
    with pytest.raises(ValueError, match="one width d"):
        vector_attention_cpu.fused_backward(q, k, v, v, v, v)
    for cpu_kernels in (True, False):
        with pytest.raises(ValueError, match="unequal widths need vector_attention_projected_chunked"):
            vector_attention_chunked(q, k, v, chunk_size=2, cpu_kernels=cpu_kernels)
