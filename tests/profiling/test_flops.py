"""FLOP counts against hand-computed multiply-adds (tiny shapes; no speed claims here)."""

import pytest
import torch
from torch import nn

from videotl.config import load_config
from videotl.models import build_model
from videotl.models.attention import MultiHeadSelfAttention
from videotl.models.vector_transformer import VectorAttention, vector_attention_chunked, vector_attention_naive
from videotl.profiling import SOFTMAX_UNITS_PER_ELEMENT, count_flops


def macs(module: nn.Module, *inputs: torch.Tensor) -> float:
    return count_flops(module, inputs).macs


def test_conv3d_counts_every_multiply_add():
    conv = nn.Conv3d(4, 6, kernel_size=3, padding=1, bias=False)
    report = count_flops(conv, torch.randn(1, 4, 5, 6, 7))
    # each of the 6 x 5 x 6 x 7 outputs takes 4 x 3^3 multiply-adds
    assert report.macs == 6 * 5 * 6 * 7 * 4 * 27
    assert report.gflops == pytest.approx(2 * report.gmacs)
    assert report.params == 4 * 6 * 27


def test_linear_counts_batch_times_in_times_out():
    assert macs(nn.Linear(10, 7), torch.randn(3, 5, 10)) == 3 * 5 * 10 * 7


def _mha_macs(batch: int, tokens: int, dim: int, heads: int) -> int:
    projections = batch * tokens * dim * 3 * dim + batch * tokens * dim * dim
    pairs = batch * heads * tokens * tokens
    return projections + 2 * pairs * (dim // heads) + SOFTMAX_UNITS_PER_ELEMENT * pairs


class _TorchMha(nn.Module):
    def __init__(self, dim: int, heads: int, need_weights: bool) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attention(x, x, x, need_weights=self.need_weights)[0]


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_multihead_attention_counts_attention_with_or_without_weights(need_weights, train):
    # need_weights=False runs scaled_dot_product_attention (or the fused inference op), True the
    # explicit bmm / softmax / bmm: both must count the same, and neither 0 for the attention.
    module = _TorchMha(32, 4, need_weights).train(train)
    assert macs(module, torch.randn(2, 16, 32)) == _mha_macs(2, 16, 32, 4)


def test_videotl_mhsa_counts_scaled_dot_product_attention():
    module = MultiHeadSelfAttention(dim=32, num_heads=4)
    report = count_flops(module, torch.randn(2, 16, 32))
    assert report.macs == _mha_macs(2, 16, 32, 4)
    assert "scaled_dot_product_attention" in report.by_operator


def _vector_attention_macs(batch: int, tokens: int, dim: int) -> int:
    projections = 3 * batch * tokens * dim * dim
    attention_tensor = batch * tokens * tokens * dim
    # pairwise products, softmax over j, weighted sum: all over the N x N x d attention tensor
    return projections + attention_tensor * (1 + SOFTMAX_UNITS_PER_ELEMENT + 1)


@pytest.mark.parametrize("chunk_size", [0, 5], ids=["naive", "chunked"])
def test_vector_transformer_counts_the_attention_tensor(chunk_size):
    tokens = 3 * 4  # S = 3 tokens per frame, T = 4 frames
    module = VectorAttention(dim=8, chunk_size=chunk_size)
    report = count_flops(module, torch.randn(2, tokens, 8))
    assert report.macs == _vector_attention_macs(2, tokens, 8)
    assert not report.skipped_ops


def test_tokenlearner_module_counts_at_s_times_t_tokens():
    # The real res5 op from the config, at C = 432, S = 2 tokens, T = 4 frames, 2 x 2 positions.
    cfg = load_config("configs/ablations/tokenlearner.yaml", ["DATA.NUM_FRAMES", "4", "TOKENLEARNER.NUM_TOKENS", "2"])
    op = build_model(cfg).stages[3][6].middle.temporal.op.eval()
    c, s, t, hw = 432, 2, 4, 4
    n = s * t
    layer_norm = 5 * n * c  # fvcore: 5 per element with an affine map; three LayerNorms on the tokens
    expected = (
        t * hw * c * s  # alpha: 1x1 conv C -> S
        + t * s * c * hw  # pooling einsum 'nshw,nchw->nsc'
        + 3 * layer_norm
        + _vector_attention_macs(1, n, c)  # f_q, f_k, f_v and eq. 3 over S*T tokens
        + c * n * n  # TokenFuser: linear over the S*T token axis
        + t * hw * c * s  # beta: 1x1 conv C -> S
        + s * t * hw * c  # fusing einsum 'bsthw,btsc->bcthw'
    )
    report = count_flops(op, torch.randn(1, c, t, 2, 2))
    assert report.macs == expected
    # alpha, f_q/f_k/f_v, three LayerNorms, the S*T x S*T token map, beta with its bias
    assert report.params == c * s + 3 * c * c + 3 * 2 * c + n * n + (c * s + s)


def test_naive_and_chunked_vector_attention_count_the_same():
    q, k, v = (torch.randn(1, 10, 6) for _ in range(3))

    class Wrap(nn.Module):
        def __init__(self, fn):
            super().__init__()
            self.fn = fn

        def forward(self, q, k, v):
            return self.fn(q, k, v)

    naive = macs(Wrap(vector_attention_naive), q, k, v)
    chunked = macs(Wrap(lambda *a: vector_attention_chunked(*a, chunk_size=3)), q, k, v)
    assert naive == chunked == 10 * 10 * 6 * (2 + SOFTMAX_UNITS_PER_ELEMENT)


def test_outer_product_einsum_counts_every_product():
    class Outer(nn.Module):
        def forward(self, a, b):
            return torch.einsum("id,jd->ijd", a, b)

    # fvcore counts this at half (numpy's flops / 2) and rounds to 4 significant digits
    assert macs(Outer(), torch.randn(7, 5), torch.randn(9, 5)) == 7 * 9 * 5


def test_gating_and_scaling_stay_uncounted_and_are_reported():
    class Gate(nn.Module):
        def forward(self, x):
            return torch.relu(x) * torch.sigmoid(x.mean(dim=-1, keepdim=True)) * 0.5

    report = count_flops(Gate(), torch.randn(2, 3, 4))
    assert report.gmacs == 0
    assert set(report.skipped_ops) >= {"aten::relu", "aten::sigmoid", "aten::mul", "aten::mean"}
    assert report.skipped_ops["aten::relu"].calls == 1
    assert report.skipped_ops["aten::relu"].elements == 24
    assert report.uncounted_matrix_ops == []


def test_an_opaque_function_holding_a_matrix_product_is_flagged():
    class Opaque(torch.autograd.Function):
        @staticmethod
        def forward(ctx, a, b):
            ctx.save_for_backward(a, b)
            return a @ b

        @staticmethod
        def backward(ctx, grad):
            a, b = ctx.saved_tensors
            return grad @ b.T, a.T @ grad

    class Model(nn.Module):
        def forward(self, a, b):
            return Opaque.apply(a, b)

    report = count_flops(Model(), (torch.randn(3, 4), torch.randn(4, 5)))
    assert report.uncounted_matrix_ops == ["prim::PythonOp.Opaque"]
    assert "UNCOUNTED" in report.format_skipped()


def test_report_json_holds_both_conventions_per_module():
    model = nn.Sequential(nn.Conv3d(3, 4, 1, bias=False), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8, 2, bias=False))
    data = count_flops(model, torch.randn(1, 3, 2, 2, 2)).to_dict()
    assert data["gmacs"] == pytest.approx((3 * 4 * 8 + 32 * 2) / 1e9)
    assert data["gflops"] == pytest.approx(2 * data["gmacs"])
    assert data["params"] == 12 + 64
    assert data["modules"]["0"] == pytest.approx({"gmacs": 96e-9, "gflops": 192e-9, "params": 12})
    assert set(data["modules"]["3"]) == {"gmacs", "gflops", "params"}


ABLATIONS = [
    "joint_mhsa", "conv2d_joint_mhsa", "tokenlearner", "conv2d_tokenlearner", "conv2d_conv1d", "conv2d_mlp_mixer",
    "conv2d_temporal_transformer", "spatial_temporal_transformer", "spatial_tokenlearner", "tokenlearner_mhsa",
    "vector_broadcast", "unpool_masks", "tokenlearner_v11", "fixed_grid", "dense_tokens", "pool_mlp_tokens",
]  # fmt: skip


@pytest.mark.parametrize("name", ABLATIONS)
def test_no_res5_module_leaves_a_matrix_product_or_attention_uncounted(name):
    cfg = load_config(f"configs/ablations/{name}.yaml", ["DATA.NUM_FRAMES", "4"])
    middle = build_model(cfg).stages[3][6].middle.eval()
    report = count_flops(middle, torch.randn(1, 432, 4, 2, 2))
    assert report.uncounted_matrix_ops == []
    assert report.gmacs > 0
