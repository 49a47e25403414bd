"""A description of the machine, written next to every timing hitgen records."""

from __future__ import annotations

import os
import platform
import sys


def machine_description(gpu: str | None = None) -> dict[str, str | int]:
    """CPU model and core count, torch version (when torch is loaded) and the GPU name if one was used."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info: dict[str, str | int] = {"cpu": cpu, "cores": os.cpu_count() or 0}
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch"] = torch.__version__
    if gpu:
        info["gpu"] = gpu
    return info


def timing_note(n_events: int, seconds: float, startup_s: float = 0.0, **extra: float | int | str) -> dict:
    """The `timing` entry of an event file's notes: how long its producer took, and where."""
    return {
        "events": n_events,
        "seconds": round(seconds, 3),
        "startup_s": round(startup_s, 3),
        "events_per_s": round(n_events / max(seconds, 1e-9), 3),
        **{k: round(v, 3) if isinstance(v, float) else v for k, v in extra.items()},
        "machine": machine_description(),
    }


def reset_peak_memory(device=None) -> None:
    """Start a new peak: the GPU allocator's on a CUDA device, else this process's resident set."""
    if device is not None and getattr(device, "type", device) == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        return
    try:  # Linux: writing 5 resets the process's peak resident set size (VmHWM)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_memory_bytes(device=None) -> int | None:
    """The peak since the last reset: GPU memory allocated on a CUDA device, else this process's
    peak resident set (VmHWM); None where the system does not say."""
    if device is not None and getattr(device, "type", device) == "cuda":
        import torch

        return int(torch.cuda.max_memory_allocated(device))
    try:
        with open("/proc/self/status") as f:
            line = next(line for line in f if line.startswith("VmHWM:"))
        return int(line.split()[1]) * 1024
    except (OSError, StopIteration):
        return None
