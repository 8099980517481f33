"""TokenLearner (eq. 1), TokenFuser (eq. 2) and the alternatives, against loop implementations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videotl.models import (
    BroadcastFuser,
    DenseTokenizer,
    FixedGridTokenizer,
    MaskUnpoolFuser,
    PoolMlpTokenizer,
    TokenFuser,
    TokenLearner,
    TokenLearnerV11,
)

B, C, T, H, W, S = 2, 6, 3, 4, 5, 4


@pytest.fixture
def volume():
    return torch.randn(B, C, T, H, W, dtype=torch.float64)


@pytest.mark.parametrize("pooling", ["mean", "sum"])
def test_tokenlearner_matches_eq1_loop(volume, pooling):
    module = TokenLearner(dim=C, num_tokens=S, alpha_layers=1, alpha_kernel=1, pooling=pooling).double()
    weight = module.alpha[0].weight[:, :, 0, 0]  # (S, C)
    tokens, maps = module(volume)
    assert tokens.shape == (B, T * S, C) and maps.shape == (B, T, S, H, W)
    for b in range(B):
        for t in range(T):
            for i in range(S):
                z = torch.zeros(C, dtype=torch.float64)
                for y in range(H):
                    for x in range(W):
                        pixel = volume[b, :, t, y, x]
                        a = torch.sigmoid(weight[i] @ pixel)
                        z += a * pixel
                if pooling == "mean":
                    z /= H * W
                torch.testing.assert_close(tokens[b, t * S + i], z)
                torch.testing.assert_close(maps[b, t, i, 2, 3], torch.sigmoid(weight[i] @ volume[b, :, t, 2, 3]))


def test_tokenlearner_four_conv_alpha_is_frame_local(volume):
    module = TokenLearner(
        dim=C, num_tokens=S, alpha_layers=4, alpha_kernel=3, pooling="sum", use_layernorm=True
    ).double()
    assert sum(isinstance(m, nn.Conv2d) for m in module.alpha) == 4
    assert sum(isinstance(m, nn.GELU) for m in module.alpha) == 3
    tokens, maps = module(volume)
    # The maps equal the 2D convs (nn.Conv2d's own forward) applied to each LayerNorm-ed frame.
    batch, channels, frames, height, width = volume.shape
    per_frame = volume.transpose(1, 2).reshape(batch * frames, channels, height, width)
    normed = F.layer_norm(per_frame.permute(0, 2, 3, 1), (channels,), module.norm.weight, module.norm.bias, 1e-6)
    expected = torch.sigmoid(module.alpha(normed.permute(0, 3, 1, 2)))
    torch.testing.assert_close(maps, expected.reshape(batch, frames, S, height, width))
    # Changing frame 0 must leave the tokens of frames 1.. untouched: alpha is per frame.
    changed = volume.clone()
    changed[:, :, 0] += 1.0
    tokens2, _ = module(changed)
    torch.testing.assert_close(tokens[:, S:], tokens2[:, S:])
    assert not torch.allclose(tokens[:, :S], tokens2[:, :S])


def test_tokenlearner_v11_maps_are_softmax_over_positions(volume):
    module = TokenLearnerV11(dim=C, num_tokens=S, hidden_dim=7).double()
    tokens, maps = module(volume)
    torch.testing.assert_close(maps.sum(dim=(-2, -1)), torch.ones(B, T, S, dtype=torch.float64))
    positions = volume.permute(0, 2, 3, 4, 1)  # (B, T, H, W, C)
    b, t, i = 1, 2, 3
    logits = module.mlp(module.norm(positions[b, t].reshape(H * W, C)))[:, i]
    weights = torch.softmax(logits, dim=0)
    torch.testing.assert_close(tokens[b, t * S + i], weights @ positions[b, t].reshape(H * W, C))


def _tokenfuser_loop(module: TokenFuser, tokens, x):
    b_, c_, t_, h_, w_ = x.shape
    out = x.clone()
    for b in range(b_):
        y = module.token_norm(tokens[b])  # (T*S, C)
        m = module.token_mix.weight  # (TS, TS) or (S, S)
        mixed = torch.zeros_like(y)
        for c in range(c_):
            if module.mix == "all":
                mixed[:, c] = m @ y[:, c]
            else:
                for t in range(t_):
                    mixed[t * S : (t + 1) * S, c] = m @ y[t * S : (t + 1) * S, c]
        mixed = module.mixed_norm(mixed)
        for t in range(t_):
            for yy in range(h_):
                for xx in range(w_):
                    pixel = x[b, :, t, yy, xx]
                    beta = torch.sigmoid(module.beta.weight @ pixel + module.beta.bias)  # (S,)
                    out[b, :, t, yy, xx] = pixel + beta @ mixed[t * S : (t + 1) * S]
    return out


@pytest.mark.parametrize("mix", ["all", "frame"])
def test_tokenfuser_matches_eq2_loop(volume, mix):
    module = TokenFuser(dim=C, num_tokens=S, num_frames=T, mix=mix).double()
    nn.init.normal_(module.token_mix.weight)  # zero at init; give it something to test
    tokens = torch.randn(B, T * S, C, dtype=torch.float64)
    torch.testing.assert_close(module(tokens, volume), _tokenfuser_loop(module, tokens, volume))


def test_tokenfuser_starts_as_identity(volume):
    module = TokenFuser(dim=C, num_tokens=S, num_frames=T).double()
    torch.testing.assert_close(module(torch.randn(B, T * S, C, dtype=torch.float64), volume), volume)
    with pytest.raises(ValueError, match="built for 3 frames"):
        module(torch.randn(B, 2 * S, C, dtype=torch.float64), volume[:, :, :2])


def test_fixed_grid_tokens_are_region_means(volume):
    tokens, maps = FixedGridTokenizer(num_tokens=4)(volume[..., :4, :4])  # 2 x 2 grid over 4 x 4
    torch.testing.assert_close(tokens[0, 1], volume[0, :, 0, 0:2, 2:4].mean(dim=(1, 2)))
    torch.testing.assert_close(tokens[1, 4 * 2 + 2], volume[1, :, 2, 2:4, 0:2].mean(dim=(1, 2)))
    assert maps[0, 0, 1, 0, 3] == 1 and maps[0, 0, 1, 3, 3] == 0


def test_dense_and_pool_mlp_tokenizers_shapes_and_frame_locality(volume):
    dense = DenseTokenizer(num_tokens=S, spatial_size=(H, W)).double()
    tokens, maps = dense(volume)
    assert tokens.shape == (B, T * S, C) and maps is None
    flat = volume[0, :, 1].reshape(C, H * W)
    torch.testing.assert_close(tokens[0, S + 2], flat @ dense.generate.weight[2] + dense.generate.bias[2])
    pooled = PoolMlpTokenizer(dim=C, num_tokens=S).double()
    tokens, _ = pooled(volume)
    assert tokens.shape == (B, T * S, C)
    expected = pooled.mlp(volume[1, :, 2].mean(dim=(1, 2))).reshape(S, C)
    torch.testing.assert_close(tokens[1, 2 * S : 3 * S], expected)


def test_broadcast_and_unpool_fusers(volume):
    tokens = torch.randn(B, T * S, C, dtype=torch.float64)
    out = BroadcastFuser(num_tokens=S)(tokens, volume)
    torch.testing.assert_close(out[1, :, 2, 3, 4], volume[1, :, 2, 3, 4] + tokens[1, 2 * S : 3 * S].mean(0))
    maps = torch.rand(B, T, S, H, W, dtype=torch.float64)
    out = MaskUnpoolFuser(num_tokens=S)(tokens, volume, maps)
    expected = volume[0, :, 1, 2, 0] + maps[0, 1, :, 2, 0] @ tokens[0, S : 2 * S]
    torch.testing.assert_close(out[0, :, 1, 2, 0], expected)
    with pytest.raises(ValueError, match="attention maps"):
        MaskUnpoolFuser(num_tokens=S)(tokens, volume, None)
