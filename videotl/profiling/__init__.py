"""Profiling: FLOP and parameter counts in the paper's convention, speed and memory benchmarks,
and the reproduction of the paper's compute figures."""

from .flops import (
    SOFTMAX_UNITS_PER_ELEMENT,
    VIDEOTL_OP_HANDLES,
    FlopReport,
    ModuleCount,
    SkippedOp,
    VideoFlopCountAnalysis,
    count_flops,
    is_matrix_or_attention_op,
)

__all__ = [
    "SOFTMAX_UNITS_PER_ELEMENT",
    "VIDEOTL_OP_HANDLES",
    "FlopReport",
    "ModuleCount",
    "SkippedOp",
    "VideoFlopCountAnalysis",
    "count_flops",
    "is_matrix_or_attention_op",
]
