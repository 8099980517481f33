"""Compute rows for the ViT and ViViT tables of the paper (Tables 1, 2, 4, 6 and 8).

Registered with :func:`videotl_tools.harness.paper_figures.register_rows` when
``tools/compute_table.py`` imports the row providers. Each row measures the whole model, built
from its config, on one image (384 x 384 for S and B, 512 x 512 for L) or one 32 x 224 x 224 view.

The paper prints these tables in multiply-adds (ViT's and ViViT's convention; only its X3D tables
count two FLOPs per multiply-add), so ``paper_gflops`` holds twice the printed figure, the label
carries the printed one, and the table's GMACs column compares with it directly (note
``vit_convention``).
"""

from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch

from videotl.profiling.flops import count_flops

from .paper_figures import FigureRow, RowResult, register_notes, register_rows

IMAGE_384 = (1, 3, 384, 384)
IMAGE_512 = (1, 3, 512, 512)
VIEW_32x224 = (1, 3, 32, 224, 224)

T1 = "Table 1: ViT on ImageNet, one 384 x 384 image (the paper prints multiply-adds)"
T2 = "Table 2: ViT-L on ImageNet, one 512 x 512 image (the paper prints multiply-adds)"
T4 = "Table 4: ViT with and without TokenFuser, one image: B at 384, L at 512 (the paper prints multiply-adds)"
T6 = "Table 6: ViViT on Kinetics-400, one 32 x 224 x 224 view (the paper prints multiply-adds)"
T8 = "Table 8: ViViT with TokenFuser on Kinetics-600, one 32 x 224 x 224 view (the paper prints multiply-adds)"


def _row(
    table: str,
    label: str,
    config: str,
    printed: float,
    input_shape,
    *notes: str,
    params_m: Optional[float] = None,
) -> FigureRow:
    return FigureRow(
        table=table,
        label=f"{label} (printed: {printed:g})",
        config=f"configs/{config}",
        input_shape=input_shape,
        paper_gflops=2.0 * printed,
        paper_params_m=params_m,
        notes=("vit_convention", *notes),
    )


ROWS = [
    _row(T1, "ViT S/32", "vit/vit_s32.yaml", 3.4, IMAGE_384),
    _row(T1, "ViT B/32", "vit/vit_b32.yaml", 19.8, IMAGE_384, "vit_b32"),
    _row(T1, "ViT B/16", "vit/vit_b16.yaml", 55.6, IMAGE_384),
    _row(T1, "TokenLearner S/32 (8-TL at 6)", "vit/vit_s32_tl8at6.yaml", 1.9, IMAGE_384),
    _row(T1, "TokenLearner B/16 (8-TL at 6)", "vit/vit_b16_tl8at6.yaml", 28.7, IMAGE_384, "vit_table1_b16"),
    _row(T1, "TokenLearner S/32 (22): 8-TL at 11", "vit/vit_s32_22_tl8at11.yaml", 3.3, IMAGE_384, "vit_midpoint"),
    _row(T1, "TokenLearner B/32 (20): 8-TL at 10", "vit/vit_b32_20_tl8at10.yaml", 11.5, IMAGE_384, "vit_midpoint"),
    _row(T1, "TokenLearner B/16 (21): 8-TL at 10", "vit/vit_b16_21_tl8at10.yaml", 47.1, IMAGE_384, "vit_midpoint"),
    _row(T1, "16-TokenLearner B/16 (21): 16-TL at 10", "vit/vit_b16_21_tl16at10.yaml", 47.7, IMAGE_384, "vit_midpoint"),
    _row(T2, "ViT L/16 (24)", "vit/vit_l16.yaml", 363.1, IMAGE_512),
    _row(T2, "L/16 (24), 16-TL at 12", "vit/vit_l16_tl16at12.yaml", 178.1, IMAGE_512, "vit_l16_tl16at12"),
    _row(T2, "L/16 (24+11), 16-TL at 12", "vit/vit_l16_24p11_tl16at12.yaml", 186.8, IMAGE_512),
    _row(T2, "L/16 (24+6), 8-TL at 18", "vit/vit_l16_24p6_tl8at18.yaml", 274.2, IMAGE_512),
    _row(T2, "L/14 (24+11), 16-TL at 18", "vit/vit_l14_24p11_tl16at18.yaml", 361.6, IMAGE_512, "vit_valid_patches"),
    _row(T4, "B/16, 8-TL at 6, no TokenFuser", "vit/vit_b16_tl8at6.yaml", 28.3, IMAGE_384),
    _row(T4, "B/16, 8-TL at 6, TokenFuser", "vit/vit_b16_tl8at6_fuser.yaml", 28.5, IMAGE_384, "vit_fuser"),
    _row(T4, "B/16, 16-TL at 6, no TokenFuser", "vit/vit_b16_tl16at6.yaml", 28.7, IMAGE_384),
    _row(T4, "B/16, 16-TL at 6, TokenFuser", "vit/vit_b16_tl16at6_fuser.yaml", 29.1, IMAGE_384, "vit_fuser"),
    _row(
        T4, "L/16 (24), 16-TL at 12, no TokenFuser", "vit/vit_l16_tl16at12.yaml", 184.6, IMAGE_512, "vit_l16_tl16at12"
    ),
    _row(T4, "L/16 (24), 16-TL at 12, TokenFuser", "vit/vit_l16_tl16at12_fuser.yaml", 187.1, IMAGE_512, "vit_fuser"),
    _row(T4, "L/16 (24), 8-TL at 18, no TokenFuser", "vit/vit_l16_tl8at18.yaml", 273.2, IMAGE_512),
    _row(T4, "L/16 (24), 8-TL at 18, TokenFuser", "vit/vit_l16_tl8at18_fuser.yaml", 273.8, IMAGE_512, "vit_fuser"),
    _row(
        T4,
        "L/10 (24+11), 16-TL at 18, no TokenFuser",
        "vit/vit_l10_24p11_tl16at18.yaml",
        849.0,
        IMAGE_512,
        "vit_valid_patches",
        "vit_l10_params",
        params_m=460.0,
    ),
    _row(
        T4,
        "L/10 (24+11), 16-TL at 18, TokenFuser",
        "vit/vit_l10_24p11_tl16at18_fuser.yaml",
        856.9,
        IMAGE_512,
        "vit_valid_patches",
        "vit_fuser",
    ),
    _row(T6, "ViViT-L/16", "vivit/vivit_l16.yaml", 1446.0, VIEW_32x224),
    _row(T6, "TokenLearner 16at12 + L/16", "vivit/vivit_l16_tl16at12.yaml", 766.0, VIEW_32x224),
    _row(
        T6, "TokenLearner 8at18 + L/16 (24+6)", "vivit/vivit_l16_24p6_tl8at18.yaml", 1105.0, VIEW_32x224, "vivit_8at18"
    ),
    _row(T6, "TokenLearner 16at18 + L/14 (24+11)", "vivit/vivit_l14_24p11_tl16at18.yaml", 1621.0, VIEW_32x224),
    _row(
        T6,
        "TokenLearner 16at18 + L/10 (24+11)",
        "vivit/vivit_l10_24p11_tl16at18.yaml",
        4076.0,
        VIEW_32x224,
        "vit_valid_patches",
    ),
    _row(
        T8,
        "TokenLearner 16at18 w. Fuser (L/10)",
        "vivit/vivit_l10_24p11_tl16at18_fuser.yaml",
        4100.0,
        VIEW_32x224,
        "vit_valid_patches",
        "vit_fuser",
    ),
]

NOTES = {
    "vit_convention": (
        "The paper's ViT and ViViT tables (1-8) count one multiply-add as one FLOP, as ViT and ViViT do: "
        "ViT-B/16 at 384 is 12 layers x (12 x 768^2 x 577 + 2 x 577^2 x 768) + the patch embedding "
        "(576 x 768 x 768) = 55.5 G multiply-adds against the printed 55.6, and ViViT-L/16x2 over "
        "16 x 14 x 14 = 3136 tokens is 1436 G against 1446. Only its X3D tables (10-12) count two. So the "
        "Paper GFLOPs column here is twice the printed figure (given in each label) and the ratio compares "
        "like with like; the GMACs column is directly comparable with the printed figure. Ours count the "
        "attention (q k^T, softmax at 3 per element, weights x v), LayerNorms and the TokenLearner's convs "
        "and pooling; the ViT baselines read a class token, the TokenLearner models pool (as the official "
        "TokenLearner code, which has no class token): the difference is one token of 145-1025."
    ),
    "vit_b32": (
        "ViT B/32 at 384 has 12 x 12 = 144 patches: 12 x (12 x 768^2 x 145 + 2 x 145^2 x 768) + 144 x 3072 "
        "x 768 = 13.0 G multiply-adds, two thirds of the printed 19.8, while every other Table 1 row (S/32, "
        "B/16 and the TokenLearner B/32 (20) built on this very model) agrees with ours within 2%. The paper's "
        "own TokenLearner B/32 (20) at 11.5 = 10 full layers + 10 layers on 8 tokens puts one full layer at "
        "about 1.06 G, so 12 layers cost 12.7 G, not 19.8. 19.8 corresponds to no standard input: B/32 "
        "reaches it only near 470 px (15 x 15 patches at 480 give 20.7). We read it as a misprint and keep "
        "the model as section 3.1 describes it."
    ),
    "vit_table1_b16": (
        "Table 1 prints 28.7 for 'TokenLearner B/16' (8 tokens by its caption), but Table 4 prints 28.3 for "
        "B/16 with 8-TL at 6 and 28.7 for 16-TL at 6; ours (8 tokens) matches 28.3, and the 16-token model is "
        "measured in Table 4 below. Within 5% either way."
    ),
    "vit_midpoint": (
        "The paper gives only the layer count of the deeper TokenLearner models ('(21)') and says the "
        "TokenLearner sits 'exactly at the mid-point of the network unless specified otherwise'. For 22, 20 "
        "and 21 layers we put it after layer 11, 10 and 10 (12 base layers + 10, 8, 9 extra layers on the "
        "learned tokens). The printed FLOPs pin the location: for B/16 (21) at layer 11 the model would cost "
        "about 51 G, outside 47.1."
    ),
    "vit_l16_tl16at12": (
        "The same model (L/16, 24 layers, 16 tokens after layer 12, no TokenFuser) is printed as 178.1 in "
        "Table 2 and 184.6 in Table 4. Ours, 12 layers over 1024 tokens (12 x 15.0 G) + 12 layers over 16 tokens (2.4 G) + "
        "embedding (0.8 G) + norms and softmax = 184.5 G multiply-adds, matches Table 4 (184.6) and is 3.6% "
        "over Table 2's 178.1, within 5%."
    ),
    "vit_valid_patches": (
        "512 (images) and 224 (video) are not multiples of 14 and 10; like the official 'VALID' patch "
        "convolution ours drops the remainder (L/14 at 512: 36 x 36 patches; L/10 at 512: 51 x 51; L/10 at "
        "224: 22 x 22 per time step, 7744 tokens). The printed figures agree with that token count."
    ),
    "vit_fuser": (
        "With TokenFuser every layer from the TokenLearner's on is TokenLearner -> transformer layer on the "
        "learned tokens -> TokenFuser + residual (the official EncoderModFuser), so each such layer adds a "
        "TokenLearner (LayerNorm, four 3x3 convs, the first C -> S over all positions) and the fuser's "
        "LayerNorm + MLP (C -> 64 -> S) over all positions, the S x S token map and the remapping "
        "(positions x S x C). Against the same model without fuser this adds, in G multiply-adds, 0.40 / "
        "0.62 (B/16, 8 / 16 tokens), 3.07 (L/16 at 12), 0.95 (L/16 at 18), 11.2 (L/10) and 33.5 (ViViT L/10); "
        "the paper's increments are 0.2 / 0.4, 2.5, 0.6, 7.9 and 24 (4100 - 4076). Ours are 1.2-2x larger: "
        "the paper does not break the fuser's cost down, and the layers above are those of the official "
        "code (at L/16 at 12 a fused layer costs 0.15 G for the first 3x3 conv and 0.07 G for the fuser's "
        "MLP alone). The totals stay within 1% of the printed figures."
    ),
    "vit_l10_params": (
        "Table 3 gives 460M parameters for TokenLearner L/10 (24+11) and the text 464M for the L models with "
        "11 extra layers. Ours: 35 layers x 12.6M + the 51 x 51 position embedding (2.7M) + patch embedding "
        "and head = 445M; the text gives no further layers (a pre-logits layer, 1M, would not close it)."
    ),
    "vivit_8at18": (
        "Section 5.2 initialises the video models from the section 3 image models, and Table 2's '8-TL at 18' "
        "L/16 has 24+6 layers, so the ViViT row is built with those 6 extra layers (on 16 x 8 = 128 tokens, "
        "10 G); the 24-layer variant is 1.6% lighter. Either is within 5% of 1105."
    ),
}

register_rows(ROWS)
register_notes(NOTES)


@dataclass(frozen=True)
class LayerwiseCount:
    """A whole-model count assembled exactly from a shortened model's fvcore count.

    Has the ``gmacs`` / ``gflops`` / ``params`` of a :class:`~videotl.profiling.flops.FlopReport`,
    so :func:`~videotl_tools.harness.paper_figures.render_markdown` renders it like one.
    """

    gmacs: float
    params: int
    measured_gmacs: float
    repeats: Tuple[Tuple[str, int], ...]

    @property
    def gflops(self) -> float:
        return 2.0 * self.gmacs

    def to_dict(self) -> Dict[str, object]:
        return {
            "gmacs": self.gmacs,
            "gflops": self.gflops,
            "params": self.params,
            "measured_gmacs": self.measured_gmacs,
            "repeats": dict(self.repeats),
        }


def _short_plan(cfg) -> Tuple[List[str], Dict[Tuple[str, ...], int]]:
    """Overrides for a model with one layer of each kind, and how often each kind repeats after it.

    Every layer before the TokenLearner sees the same tokens, and so does every layer after it
    (with its own TokenLearner and TokenFuser when fused): their counts are identical, and the
    full model is the short one plus the missing copies.
    """
    vit = cfg.VIT
    total = vit.DEPTH + vit.EXTRA_LAYERS
    k = vit.TOKENLEARNER_LAYER
    fused = cfg.TOKENLEARNER.FUSER == "tokenfuser"
    if k < 0 or k == total:
        # No TokenLearner, or one after the last layer: all layers see the full token grid.
        short = ["VIT.DEPTH", "1", "VIT.EXTRA_LAYERS", "0"] + (["VIT.TOKENLEARNER_LAYER", "1"] if k >= 0 else [])
        return short, {("blocks.0",): total - 1}
    after = ("blocks.1", "tokenlearners.0", "fusers.0") if fused else ("blocks.1",)
    if k == 0:
        after = tuple(name.replace(".1", ".0") for name in after)
        return ["VIT.DEPTH", "1", "VIT.EXTRA_LAYERS", "0", "VIT.TOKENLEARNER_LAYER", "0"], {after: total - 1}
    short = ["VIT.DEPTH", "2", "VIT.EXTRA_LAYERS", "0", "VIT.TOKENLEARNER_LAYER", "1"]
    return short, {("blocks.0",): k - 1, after: total - k - 1}


def measure_row_by_layers(row: FigureRow) -> RowResult:
    """The row's whole-model count without running every layer: fvcore on a model with one layer
    per kind (same input, same token counts), plus the per-layer counts times the missing layers.
    Parameters come from the full model built on the meta device. Exact, and minutes instead of
    hours for the ViViT-L rows on a CPU."""
    from videotl.config import load_config
    from videotl.models import build_model

    cfg = load_config(row.config, list(row.overrides))
    short_overrides, repeats = _short_plan(cfg)
    with torch.device("meta"):
        params = sum(p.numel() for p in build_model(cfg).parameters())
    torch.manual_seed(0)
    short = build_model(load_config(row.config, [*row.overrides, *short_overrides])).eval()
    report = count_flops(short, torch.randn(row.input_shape))
    macs = report.gmacs + sum(
        count * sum(report.modules[name].gmacs for name in names) for names, count in repeats.items()
    )
    plan = tuple(("+".join(names), count) for names, count in repeats.items())
    return RowResult(
        row=row, report=LayerwiseCount(gmacs=macs, params=params, measured_gmacs=report.gmacs, repeats=plan)
    )
