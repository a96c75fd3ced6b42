"""Eager PyTorch on the CPU, and on CUDA where there is one."""

from __future__ import annotations

import time

import torch

from profiler_service.measure.backends.base import Backend


class TorchBackend(Backend):
    name = "torch"
    device = "cpu"
    requires = ("torch",)

    def runner(self, module, input_shape, cache_key):
        module = module.eval().to(self.device)
        x = torch.randn(*input_shape, device=self.device)

        def run():
            with torch.inference_mode():
                return module(x)
        return run


class TorchCudaBackend(TorchBackend):
    """CUDA timing: synchronise before reading the clock, so the time covers the kernels, not the launch."""

    name = "torch-cuda"
    device = "cuda"
    needs = "it needs a CUDA GPU and a CUDA build of torch"

    @classmethod
    def usable(cls) -> bool:
        return torch.cuda.is_available()

    def timer(self) -> float:
        torch.cuda.synchronize()
        return time.perf_counter()
