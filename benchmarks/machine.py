"""What every benchmark records beside its figures: the machine, the software, and how loaded it was."""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path


def machine_info() -> dict:
    """Platform, CPU count and affinity, torch version and threads, GPU, 1-minute load average now."""
    import torch

    info = {
        "date": dt.datetime.now().isoformat(timespec="seconds"), "platform": platform.platform(),
        "python": platform.python_version(), "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "processor": platform.processor() or platform.machine(), "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(), "cuda": torch.cuda.is_available(),
        "loadavg_1m_start": load_average(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    return info


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def report(result: dict, out: str | os.PathLike | None, machine: dict | None = None) -> None:
    """Print the result as JSON and, when `out` is given, write it there too. `machine` (from
    `machine_info()` at the start of the run) goes in as "machine", with the load average at the end."""
    if machine is not None:
        result = {**result, "machine": {**machine, "loadavg_1m_end": load_average()}}
    text = json.dumps(result, indent=1)
    print(text)
    if out:
        Path(out).write_text(text)
