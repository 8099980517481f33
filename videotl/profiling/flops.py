"""FLOP and parameter counts that match the paper's convention, on top of fvcore.

fvcore's ``FlopCountAnalysis`` counts one multiply-add (MAC) as one "flop" and only has handles for
convolutions, linear layers, matrix products, einsum and norms. Everything else counts 0, which
hides exactly the work that distinguishes the models of this paper:

- ``aten::scaled_dot_product_attention`` (every MHSA variant here) counts 0, so a joint space-time
  MHSA over 4096 tokens shows only its projections (3.06 G instead of 17.5 G MACs).
- The Vector Transformer's pairwise products ``q_i * k_j`` and weighted sums are broadcast ``*``
  followed by ``.sum`` (naive path) or a custom autograd Function (chunked path): both count 0.
- fvcore's einsum handle rounds through numpy's printed cost (4 significant digits) and counts a
  product without contraction (``'id,jd->ijd'``) at half.

``count_flops`` adds handles for those, and reports every operation that still counts 0 with its
number of calls and the elements it produced, so that what is left out can be judged.

Counting convention (stated in every report):

- ``gmacs``: multiply-adds, the unit of fvcore, X3D and PySlowFast ("GFLOPs" in their tables).
  A scalar product is one unit whether or not it is accumulated, and the other scalar work fvcore
  already counts (BatchNorm, LayerNorm, pooling) stays at fvcore's one unit per element operation.
  Softmax is counted at ``SOFTMAX_UNITS_PER_ELEMENT`` (exp, running sum, divide).
- ``gflops = 2 x gmacs``: the convention of the TokenLearner paper's tables (its Table 11 gives a
  full 3x3 conv at 432 channels over 64 x 8 x 8 as 13.8 = 2 x 9 x 432^2 x 4096 / 1e9).
"""

from dataclasses import dataclass, field
from math import prod
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import torch
from fvcore.nn import FlopCountAnalysis, parameter_count
from fvcore.nn.jit_handles import einsum_flop_jit, elementwise_flop_counter, get_shape
from torch import nn

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

Handle = Callable[[List[Any], List[Any]], Union[int, float]]

# exp, add to the running sum, divide: thop's count for softmax. The max-subtraction that keeps
# exp in range is not counted (fvcore's norms leave the same kind of bookkeeping out).
SOFTMAX_UNITS_PER_ELEMENT = 3

# Operations that move or describe data but do no arithmetic: never reported as skipped.
_DATA_MOVEMENT_OPS = frozenset(
    """
    aten::Int aten::ScalarImplicit aten::alias aten::as_strided aten::cat aten::chunk aten::clone
    aten::contiguous aten::copy_ aten::detach aten::empty aten::empty_like aten::expand aten::expand_as
    aten::flatten aten::full aten::full_like aten::index aten::index_select aten::narrow aten::new_empty
    aten::new_full aten::new_zeros aten::numel aten::ones aten::ones_like aten::permute aten::repeat
    aten::reshape aten::select aten::size aten::slice aten::split aten::split_with_sizes aten::squeeze
    aten::stack aten::t aten::to aten::transpose aten::type_as aten::unbind aten::unflatten aten::unsqueeze
    aten::unsqueeze_ aten::view aten::view_as aten::zeros aten::zeros_like aten::arange aten::eye
    aten::dropout aten::dropout_ aten::feature_dropout aten::alpha_dropout aten::lift_fresh
    aten::detach_ aten::resolve_conj aten::resolve_neg
    """.split()
)

# Name fragments of operations that are (or may hide) a matrix product or an attention. None of
# these may be left uncounted: ``FlopReport.uncounted_matrix_ops`` lists any that were.
_MATRIX_OR_ATTENTION_MARKERS = ("mm", "matmul", "linear", "conv", "einsum", "attention", "dot", "bilinear", "PythonOp")


def is_matrix_or_attention_op(kind: str) -> bool:
    """Whether an op name (``aten::bmm``, ``prim::PythonOp.X``) is a matrix product, an attention,
    or an opaque Python op that could contain one."""
    name = kind.split("::", 1)[-1]
    return any(marker in name for marker in _MATRIX_OR_ATTENTION_MARKERS)


def _shape(value: Any) -> Optional[List[int]]:
    """The static shape of a traced tensor value, or None for non-tensors and unknown shapes."""
    if not isinstance(value.type(), torch._C.TensorType):
        return None
    return get_shape(value)


def _numel(shape: Optional[Sequence[int]]) -> int:
    return prod(shape) if shape is not None else 0


# ---------------------------------------------------------------------------------------------
# Handles. Each takes the traced (inputs, outputs) of one node and returns multiply-adds.


def sdpa_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``F.scaled_dot_product_attention(q, k, v)``: ``q k^T`` and ``p v`` as multiply-adds plus the softmax.

    With q (..., L, E), k (..., S, E), v (..., S, Ev): ``B L S E + B L S Ev + softmax(B L S)``,
    B the product of the (broadcast) batch dimensions. The scale and an additive mask are
    activation-sized and not counted, as in the explicit path ``nn.MultiheadAttention`` takes with
    ``need_weights=True`` (bmm, softmax, bmm), so both paths count the same.
    """
    q, k, v = (_shape(value) for value in inputs[:3])
    out = _shape(outputs[0])
    batch = prod(out[:-2])
    pairs = batch * q[-2] * k[-2]
    return pairs * q[-1] + pairs * v[-1] + SOFTMAX_UNITS_PER_ELEMENT * pairs


def native_mha_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``aten::_native_multi_head_attention``, the fused inference path of ``nn.MultiheadAttention``:
    the q, k, v and output projections plus the attention itself (as ``sdpa_flop_jit``)."""
    query, key = _shape(inputs[0]), _shape(inputs[1])
    embed_dim, num_heads = inputs[3].toIValue(), inputs[4].toIValue()
    batch, length, source = query[0], query[1], key[1]
    projections = batch * (length + 2 * source) * embed_dim * embed_dim + batch * length * embed_dim * embed_dim
    pairs = batch * num_heads * length * source
    head_dim = embed_dim // num_heads
    return projections + 2 * pairs * head_dim + SOFTMAX_UNITS_PER_ELEMENT * pairs


def baddbmm_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``baddbmm(input, b1, b2)`` = input + b1 @ b2: the batched product (fvcore has no handle)."""
    n, c, t = _shape(inputs[1])
    d = _shape(inputs[2])[-1]
    return n * c * t * d


def einsum_exact_flop_jit(inputs: List[Any], outputs: List[Any]) -> Union[int, float]:
    """Two-operand einsum: one unit per scalar product, i.e. the product of every index's size.

    That is the multiply-add count of a contraction (``'bijd,bjd->bid'``: B N N d) and the product
    count of an outer product (``'id,jd->ijd'``: N N d, which fvcore counts at half). Exact, unlike
    fvcore's, which parses numpy's cost printed to 4 significant digits. Three or more operands go
    to fvcore's handle (numpy's optimal contraction path).
    """
    equation = inputs[0].toIValue().replace(" ", "")
    operand_shapes = [_shape(value) for value in inputs[1].node().inputs()]
    if len(operand_shapes) != 2 or "..." in equation:
        return einsum_flop_jit(inputs, outputs)
    operand_subscripts = equation.split("->")[0].split(",")
    sizes: Dict[str, int] = {}
    for subscripts, shape in zip(operand_subscripts, operand_shapes):
        for letter, size in zip(subscripts, shape):
            sizes[letter] = max(size, sizes.get(letter, 1))
    return prod(sizes.values())


def _is_outer_product(inputs: List[Any], outputs: List[Any]) -> bool:
    """A broadcast multiplication whose result is larger than each operand: it forms new pairs
    (``q.unsqueeze(2) * k.unsqueeze(1)``), unlike gating or scaling, which keep an operand's size."""
    operands = [_shape(value) for value in inputs[:2]]
    if any(shape is None for shape in operands):
        return False  # a Python scalar operand: scaling
    sizes = [_numel(shape) for shape in operands]
    out = _numel(_shape(outputs[0]))
    return min(sizes) > 1 and out > max(sizes)


def _feeds_sum(outputs: List[Any]) -> bool:
    return any(use.user.kind() == "aten::sum" for use in outputs[0].uses())


def mul_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """Broadcast ``*`` that forms pairwise products (the Vector Transformer's ``q_i * k_j``), or a
    ``*`` whose products are then summed (its naive weighted sum ``(p * v).sum(j)``, a contraction
    written out): one unit per product. Gating and scaling ``*`` stay uncounted, as in fvcore."""
    if _is_outer_product(inputs, outputs) or _feeds_sum(outputs):
        return _numel(_shape(outputs[0]))
    return 0


def _sum_of_products(inputs: List[Any]) -> bool:
    """A ``sum`` over a ``*``: its adds are the adds of the multiply-adds counted at the ``*``."""
    return inputs[0].node().kind() in ("aten::mul", "aten::mul_")


def softmax_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """``SOFTMAX_UNITS_PER_ELEMENT`` per element: material in the Vector Transformer, whose
    softmax runs over the whole ST x ST x d attention tensor."""
    return SOFTMAX_UNITS_PER_ELEMENT * _numel(_shape(inputs[0]))


def vector_attention_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """The fused Vector Transformer (the ``videotl::vector_attention`` operator, traced as one op).

    Eq. 3 with q (B, N, d), k and v (B, M, d): B N M d pairwise products, a softmax over the
    B N M d attention tensor and B N M d multiply-adds of the weighted sum, the same count the
    naive path's broadcast ``*``, ``softmax`` and ``* .sum`` get from the handles above.
    """
    q, k = _shape(inputs[0]), _shape(inputs[1])
    elements = q[0] * q[1] * k[1] * q[2]
    return elements + SOFTMAX_UNITS_PER_ELEMENT * elements + elements


# Handles added to (or replacing) fvcore's defaults. Other modules may add entries for their ops.
VIDEOTL_OP_HANDLES: Dict[str, Handle] = {
    "aten::scaled_dot_product_attention": sdpa_flop_jit,
    "aten::_native_multi_head_attention": native_mha_flop_jit,
    "aten::baddbmm": baddbmm_flop_jit,
    "aten::einsum": einsum_exact_flop_jit,
    "aten::mul": mul_flop_jit,
    "aten::mul_": mul_flop_jit,
    "aten::softmax": softmax_flop_jit,
    "aten::_softmax": softmax_flop_jit,
    "videotl::vector_attention": vector_attention_flop_jit,
    # fvcore counts adaptive_avg_pool2d at one unit per input element; the same for the 3D pools.
    "aten::adaptive_avg_pool3d": elementwise_flop_counter(1, 0),
    "aten::adaptive_avg_pool1d": elementwise_flop_counter(1, 0),
    "aten::avg_pool3d": elementwise_flop_counter(1, 0),
    "aten::avg_pool2d": elementwise_flop_counter(1, 0),
}


# ---------------------------------------------------------------------------------------------
# Analysis with a record of what counted zero.


@dataclass
class SkippedOp:
    """An operation that counted zero: how often it ran and how many elements it produced."""

    calls: int = 0
    elements: int = 0


class _SkipRecorder:
    """Wraps every handle so an op that returns 0 is recorded, and answers for ops without one."""

    def __init__(self) -> None:
        self.skipped: Dict[str, SkippedOp] = {}

    def note(self, kind: str, outputs: List[Any]) -> None:
        if kind.startswith("prim::") and not kind.startswith("prim::PythonOp"):
            return
        if kind in _DATA_MOVEMENT_OPS:
            return
        elements = sum(_numel(_shape(value)) for value in outputs)
        if elements <= 1 and not is_matrix_or_attention_op(kind):
            return  # shape arithmetic on sizes traced as 0-dim tensors
        entry = self.skipped.setdefault(kind, SkippedOp())
        entry.calls += 1
        entry.elements += elements

    def wrap(self, kind: str, handle: Handle) -> Handle:
        def recorded(inputs: List[Any], outputs: List[Any]) -> Union[int, float]:
            count = handle(inputs, outputs)
            if not count:
                self.note(kind, outputs)
            return count

        return recorded

    def zero(self, kind: str) -> Handle:
        def recorded(inputs: List[Any], outputs: List[Any]) -> int:
            if not (kind == "aten::sum" and _sum_of_products(inputs)):
                self.note(kind, outputs)
            return 0

        return recorded


class _RecordingHandleTable(dict):
    """fvcore's op-handle table that also answers for ops it has no handle for (with a recording
    zero handle), so the ops fvcore would silently ignore (relu, add, ...) are reported too."""

    def __init__(self, recorder: _SkipRecorder) -> None:
        super().__init__()
        self._recorder = recorder

    def __setitem__(self, kind: str, handle: Handle) -> None:
        super().__setitem__(kind, self._recorder.wrap(kind, handle))

    def __contains__(self, kind: object) -> bool:
        return True

    def __missing__(self, kind: str) -> Handle:
        return self._recorder.zero(kind)


class VideoFlopCountAnalysis(FlopCountAnalysis):
    """``FlopCountAnalysis`` with videotl's handles and a record of the ops that counted zero.

    Counts multiply-adds (fvcore's unit); see the module docstring for the convention.
    ``skipped_ops()`` replaces fvcore's ``unsupported_ops()``, which leaves out the ops fvcore
    ignores on purpose (relu, dropout, ...), and includes handled ops that returned 0 (gating ``*``).
    Relies on fvcore 0.1.5's ``_op_handles`` table (fvcore is frozen at that release).
    """

    def __init__(
        self,
        model: nn.Module,
        inputs: Union[torch.Tensor, Tuple[torch.Tensor, ...]],
        *,
        extra_handles: Optional[Mapping[str, Handle]] = None,
    ) -> None:
        self._recorder = _SkipRecorder()
        super().__init__(model=model, inputs=inputs)
        table = _RecordingHandleTable(self._recorder)
        for kind, handle in self._op_handles.items():
            table[kind] = handle
        self._op_handles = table
        self.set_op_handle(**{**VIDEOTL_OP_HANDLES, **dict(extra_handles or {})})
        self.unsupported_ops_warnings(False)
        self.uncalled_modules_warnings(False)

    def skipped_ops(self) -> Dict[str, SkippedOp]:
        """Ops that counted zero over the whole model, by name (after running the analysis)."""
        self._analyze()
        return dict(sorted(self._recorder.skipped.items()))


# ---------------------------------------------------------------------------------------------
# Reports.


@dataclass(frozen=True)
class ModuleCount:
    """Multiply-adds and parameters of one module."""

    macs: float
    params: int

    @property
    def gmacs(self) -> float:
        return self.macs / 1e9

    @property
    def gflops(self) -> float:
        """The paper's convention: 2 FLOPs per multiply-add."""
        return 2.0 * self.gmacs

    def to_dict(self) -> Dict[str, float]:
        return {"gmacs": self.gmacs, "gflops": self.gflops, "params": self.params}


CONVENTION = (
    "gmacs = 1e9 multiply-adds (fvcore / X3D / PySlowFast 'GFLOPs'); "
    "gflops = 2 x gmacs (the TokenLearner paper's tables). Attention (scaled_dot_product_attention, "
    "the Vector Transformer's pairwise products and weighted sums) is counted; softmax at "
    f"{SOFTMAX_UNITS_PER_ELEMENT} per element; norms and pooling as fvcore counts them."
)


@dataclass
class FlopReport:
    """Whole-model and per-module counts of one traced forward pass."""

    input_shapes: List[List[int]]
    total: ModuleCount
    modules: Dict[str, ModuleCount]
    by_operator: Dict[str, float]
    skipped_ops: Dict[str, SkippedOp]
    convention: str = CONVENTION
    extra: Dict[str, Any] = field(default_factory=dict)

    @property
    def macs(self) -> float:
        return self.total.macs

    @property
    def gmacs(self) -> float:
        return self.total.gmacs

    @property
    def gflops(self) -> float:
        return self.total.gflops

    @property
    def params(self) -> int:
        return self.total.params

    @property
    def uncounted_matrix_ops(self) -> List[str]:
        """Skipped ops that are matrix products or attentions: must be empty for a trusted count."""
        return [kind for kind in self.skipped_ops if is_matrix_or_attention_op(kind)]

    def to_dict(self) -> Dict[str, Any]:
        """JSON-ready: totals at the top level, then ``modules`` with the same three keys each."""
        return {
            "gmacs": self.gmacs,
            "gflops": self.gflops,
            "params": self.params,
            "convention": self.convention,
            "input_shapes": self.input_shapes,
            "by_operator_gmacs": self.by_operator,
            "skipped_ops": {
                kind: {"calls": op.calls, "elements": op.elements} for kind, op in self.skipped_ops.items()
            },
            "uncounted_matrix_ops": self.uncounted_matrix_ops,
            **self.extra,
            "modules": {name: count.to_dict() for name, count in self.modules.items()},
        }

    def format_table(self, *, depth: int = 2) -> str:
        """Per-module table down to ``depth`` levels of nesting, both conventions side by side."""
        header = f"{'module':<48} {'params':>12} {'GMACs':>10} {'GFLOPs':>10}"
        lines = [header, "-" * len(header)]
        lines.append(f"{'(model)':<48} {self.params:>12,} {self.gmacs:>10.3f} {self.gflops:>10.3f}")
        for name, count in self.modules.items():
            level = name.count(".") + 1
            if level > depth:
                continue
            label = "  " * (level - 1) + name.rsplit(".", 1)[-1] if level > 1 else name
            lines.append(f"{label:<48} {count.params:>12,} {count.gmacs:>10.3f} {count.gflops:>10.3f}")
        return "\n".join(lines)

    def format_skipped(self) -> str:
        """The ops still counted zero, with calls and elements, and a check on matrix products."""
        total = sum(op.elements for op in self.skipped_ops.values())
        lines = [f"ops counted 0 ({len(self.skipped_ops)} kinds, {total / 1e9:.3f} G output elements in all):"]
        for kind, op in sorted(self.skipped_ops.items(), key=lambda item: -item[1].elements):
            lines.append(f"  {kind:<40} calls {op.calls:>5}   elements {op.elements / 1e6:>12.2f} M")
        bad = self.uncounted_matrix_ops
        lines.append(
            f"  UNCOUNTED MATRIX PRODUCTS / ATTENTION: {', '.join(bad)}"
            if bad
            else "  none of them is a matrix product or an attention"
        )
        return "\n".join(lines)

    def format_summary(self) -> str:
        return (
            f"input {' + '.join('x'.join(map(str, s)) for s in self.input_shapes)}: "
            f"{self.gmacs:.3f} GMACs (multiply-adds, fvcore/X3D convention) = "
            f"{self.gflops:.3f} GFLOPs (2 x multiply-adds, the paper's convention); "
            f"{self.params:,} parameters ({self.params / 1e6:.2f} M)"
        )


def count_flops(
    model: nn.Module,
    inputs: Union[torch.Tensor, Tuple[torch.Tensor, ...]],
    *,
    extra_handles: Optional[Mapping[str, Handle]] = None,
) -> FlopReport:
    """Trace ``model(*inputs)`` once (without autograd) and count multiply-adds and parameters.

    The model is counted in the mode it is in (call ``.eval()`` first for inference counts).
    """
    inputs = (inputs,) if isinstance(inputs, torch.Tensor) else tuple(inputs)
    analysis = VideoFlopCountAnalysis(model, inputs, extra_handles=extra_handles)
    with torch.no_grad():
        by_module = analysis.by_module()
    params = parameter_count(model)
    modules = {
        name: ModuleCount(macs=by_module.get(name, 0), params=int(params.get(name, 0)))
        for name, _ in model.named_modules()
        if name
    }
    by_operator = {op: count / 1e9 for op, count in sorted(analysis.by_operator().items(), key=lambda item: -item[1])}
    return FlopReport(
        input_shapes=[list(x.shape) for x in inputs],
        total=ModuleCount(macs=by_module[""], params=int(params[""])),
        modules=modules,
        by_operator=by_operator,
        skipped_ops=analysis.skipped_ops(),
    )
