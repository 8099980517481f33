"""Mixed precision: which autocast dtype a run computes in, the context it runs under, and
whether it needs a gradient scaler. Training and evaluation share these, so both run alike."""

import contextlib
from typing import Optional

import torch

from ..config import ConfigError

__all__ = ["AMP_DTYPES", "autocast", "bfloat16_supported", "needs_grad_scaler", "resolve_amp_dtype"]

AMP_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def bfloat16_supported(device: torch.device) -> bool:
    """Native bfloat16 on this CUDA device (Ampere and later); emulated support does not count."""
    with torch.cuda.device(device):
        return torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_amp_dtype(name: str, *, enabled: bool, device: torch.device) -> Optional[torch.dtype]:
    """The autocast dtype for ``TRAIN.AMP_DTYPE = name``, or None when mixed precision is off
    (``enabled`` False, or not on CUDA). ``"auto"`` is bfloat16 where the GPU has it, else float16."""
    if not enabled or device.type != "cuda":
        return None
    if name == "auto":
        return torch.bfloat16 if bfloat16_supported(device) else torch.float16
    if name not in AMP_DTYPES:
        raise ConfigError(f"TRAIN.AMP_DTYPE = {name!r}: must be one of 'auto', {', '.join(map(repr, AMP_DTYPES))}")
    if name == "bfloat16" and not bfloat16_supported(device):
        raise ConfigError(
            f"TRAIN.AMP_DTYPE = 'bfloat16', but {torch.cuda.get_device_name(device)} has no native bfloat16: "
            "use 'float16' or 'auto'"
        )
    return AMP_DTYPES[name]


def needs_grad_scaler(dtype: Optional[torch.dtype]) -> bool:
    """float16 gradients underflow without loss scaling; bfloat16 has float32's range and needs none."""
    return dtype == torch.float16


def autocast(device: torch.device, dtype: Optional[torch.dtype]):
    """Autocast to ``dtype`` on ``device``; no autocast when ``dtype`` is None."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
