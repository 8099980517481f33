"""Export a model for deployment, and check the exported file against the eager model.

Three formats: ``torchscript`` (a ``torch.jit.trace``, saved with ``torch.jit.save``),
``export`` (``torch.export``, saved as a ``.pt2`` program) and ``onnx`` (the dynamo exporter; run
with onnxruntime). The Vector Transformer exports as its chunked computation in plain PyTorch ops
(:func:`videotl.models.vector_transformer.exportable_ops`), so no custom operator is needed.
"""

from __future__ import annotations

import copy
import itertools
import os
import warnings
from pathlib import Path
from typing import Callable, Union

import numpy as np
import torch
from torch import nn

from ..utils.fileio import atomic_path
from .memory_format import to_contiguous
from .vector_transformer import exportable_ops

__all__ = ["EXPORT_FORMATS", "ExportError", "export_model", "load_exported", "round_trip_error"]

EXPORT_FORMATS = ("torchscript", "export", "onnx")
SUFFIXES = {"torchscript": ".pt", "export": ".pt2", "onnx": ".onnx"}

PathLike = Union[str, os.PathLike]


class ExportError(RuntimeError):
    """An export or its round-trip check failed; the message names the file and the reason."""


def _check_format(format: str) -> None:
    if format not in EXPORT_FORMATS:
        raise ValueError(f"format = {format!r}: must be one of {', '.join(EXPORT_FORMATS)}")


def export_model(model: nn.Module, example: torch.Tensor, path: PathLike, *, format: str) -> Path:
    """Export ``model`` (put in eval mode) for input shaped like ``example`` into ``path``, atomically.

    The file holds contiguous weights: a channels-last model is exported from a contiguous copy.
    """
    _check_format(format)
    model = model.eval()
    if not all(t.is_contiguous() for t in itertools.chain(model.parameters(), model.buffers())):
        model = to_contiguous(copy.deepcopy(model))
    path = Path(path)
    with atomic_path(path) as tmp, torch.no_grad():
        if format == "torchscript":
            with exportable_ops(), warnings.catch_warnings():
                # The shape checks in the model's Python code are constants of a trace, by design.
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(model, (example,))
            torch.jit.save(traced, str(tmp))
        elif format == "export":
            program = torch.export.export(model, (example,))
            # An open file: torch.export warns about a path that does not end in .pt2 (the temporary's).
            with open(tmp, "wb") as handle:
                torch.export.save(program, handle)
        else:
            try:
                import onnxscript  # noqa: F401 - the dynamo exporter needs it
            except ImportError:
                raise ExportError("ONNX export needs onnx and onnxscript: pip install onnx onnxscript") from None
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False)
            program.save(str(tmp))
    return path


def load_exported(path: PathLike, *, format: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """A function running the exported file on a CPU tensor and returning a tensor."""
    _check_format(format)
    path = Path(path)
    if format == "torchscript":
        module = torch.jit.load(str(path), map_location="cpu")
        return lambda x: module(x)
    if format == "export":
        with open(path, "rb") as handle:
            module = torch.export.load(handle).module()
        return lambda x: module(x)
    try:
        import onnxruntime
    except ImportError:
        raise ExportError(f"checking {path} needs onnxruntime: pip install onnxruntime") from None
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: torch.from_numpy(np.asarray(session.run(None, {name: x.cpu().numpy()})[0]))


def round_trip_error(model: nn.Module, path: PathLike, example: torch.Tensor, *, format: str) -> float:
    """Max absolute difference between the eager model and the exported file on ``example``."""
    with torch.no_grad():
        expected = model.eval()(example)
        got = load_exported(path, format=format)(example)
    if got.shape != expected.shape:
        raise ExportError(f"{path}: the exported model returns shape {tuple(got.shape)}, eager {tuple(expected.shape)}")
    return float((got.float() - expected.float()).abs().max())
