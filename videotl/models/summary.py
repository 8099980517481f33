"""A layer table for a model: name, type, output shape and parameters, from one real forward pass."""

from typing import List, Sequence, Tuple

import torch
from torch import nn


def summarize(
    model: nn.Module, clip: torch.Tensor, *, depth: int = 2
) -> Tuple[List[Tuple[str, str, str, int]], torch.Tensor]:
    """Run ``model(clip)`` once and return ``(rows, output)``.

    ``rows`` holds ``(name, type, output shape, parameters)`` for every module at most ``depth``
    levels below the root, in execution order.
    """
    rows, hooks = [], []

    def record(name: str, module: nn.Module):
        def hook(_module, _inputs, output):
            shape = tuple(output.shape) if isinstance(output, torch.Tensor) else type(output).__name__
            rows.append((name, type(module).__name__, str(shape), sum(p.numel() for p in module.parameters())))

        return hook

    for name, module in model.named_modules():
        if name and name.count(".") < depth:
            hooks.append(module.register_forward_hook(record(name, module)))
    try:
        with torch.no_grad():
            output = model(clip)
    finally:
        for hook in hooks:
            hook.remove()
    return rows, output


def format_table(rows: Sequence[Tuple[str, str, str, int]]) -> str:
    header = ("module", "type", "output shape", "params")
    widths = [max(len(str(r[i])) for r in list(rows) + [header]) for i in range(4)]
    lines = [
        f"{header[0]:<{widths[0]}}  {header[1]:<{widths[1]}}  {header[2]:<{widths[2]}}  {header[3]:>{widths[3]}}",
        "-" * (sum(widths) + 6),
    ]
    for name, kind, shape, params in rows:
        lines.append(f"{name:<{widths[0]}}  {kind:<{widths[1]}}  {shape:<{widths[2]}}  {params:>{widths[3]},}")
    return "\n".join(lines)
