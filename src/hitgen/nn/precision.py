"""Devices and number formats: the checks every command makes, and the one autocast set-up."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from hitgen.core.errors import HitgenError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def autocast(device: str | torch.device, dtype: str) -> AbstractContextManager:
    """bf16 autocast on the device's type for "bf16"; nothing for "fp32"."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16) if dtype == "bf16" else nullcontext()


def check_dtype(device: str, dtype: str) -> str:
    if dtype not in DTYPES:
        raise HitgenError(f"--dtype must be one of {', '.join(DTYPES)} (got {dtype})")
    if dtype == "bf16" and device.startswith("cuda") and not torch.cuda.is_bf16_supported():
        raise HitgenError(f"--dtype bf16: the GPU {torch.cuda.get_device_name(device)} cannot run bf16")
    return dtype


def check_device(device: str) -> str:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise HitgenError(f"--device {device}: no CUDA GPU is available on this machine")
    if not (device == "cpu" or device.startswith("cuda")):
        raise HitgenError(f"--device must be cpu or cuda (got {device})")
    return device
