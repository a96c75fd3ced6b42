"""Device fingerprint: what makes one table's numbers comparable to another's."""

from __future__ import annotations

import os
import platform
from functools import lru_cache
from pathlib import Path


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _governor() -> str | None:
    # nn-Meter #83: CPU frequency scaling moves latencies; record it with the table.
    p = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        return p.read_text().strip()
    except OSError:
        return None


@lru_cache(maxsize=1)
def fingerprint() -> dict:
    import numpy
    import onnxruntime
    import torch

    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "numpy": numpy.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "governor": _governor(),
    }
