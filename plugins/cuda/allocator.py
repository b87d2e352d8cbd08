"""Host <-> device copies for cuda: CuPy arrays, allocated from CuPy's memory pool (which keeps
freed blocks per device for reuse) and placed with ``cupy.cuda.Device(i)``. Out of memory is a
kaffa DeviceMemoryError; nothing in the workspace has been touched by then."""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.runtime import Allocator
from kaffa_cuda.kernels.common import guard


class CUDAAllocator(Allocator):
    def __init__(self, label: str, cupy: Any, index: int):
        super().__init__(label)
        self.cupy = cupy
        self.index = index
        self.array_type = cupy.ndarray
        self.pool = cupy.get_default_memory_pool()  # every CuPy allocation goes through it

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        with (
            self.cupy.cuda.Device(self.index),
            guard(f"allocating {np.dtype(dtype).name}{list(shape)}", self.index),
        ):
            return self.cupy.empty(shape, dtype)

    def copyin(self, host: np.ndarray) -> Any:
        with (
            self.cupy.cuda.Device(self.index),
            guard(f"copying in {host.dtype.name}{list(host.shape)}", self.index),
        ):
            out = self.cupy.empty(host.shape, host.dtype)
            out.set(host)
            return out

    def copyout(self, array: Any) -> np.ndarray:
        with self.cupy.cuda.Device(array.device.id):
            return array.get()  # synchronous on the current stream; a new numpy array

    def copy_to(self, array: Any) -> Any:
        """A copy of ``array`` (on any GPU) on this device: peer to peer where the GPUs allow it."""
        with (
            self.cupy.cuda.Device(self.index),
            guard(f"copying {array.dtype.name}{list(array.shape)}", self.index),
        ):
            return array.copy()

    def trim(self) -> None:
        with self.cupy.cuda.Device(self.index):
            self.pool.free_all_blocks()
