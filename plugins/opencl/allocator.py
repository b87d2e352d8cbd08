"""Host <-> device copies for opencl: pyopencl arrays (``pyopencl.array.Array``) allocated from a
``pyopencl.tools.MemoryPool``, so that the many short-lived blobs of a net reuse buffers."""

from __future__ import annotations

from typing import Any

import numpy as np

from kaffa.runtime import Allocator


class OpenCLAllocator(Allocator):
    def __init__(self, label: str, queue: Any, fp64: bool, max_alloc: int):
        super().__init__(label, max_alloc, "CL_DEVICE_MAX_MEM_ALLOC_SIZE")
        import pyopencl.array as cl_array  # importable: discovery found a platform through it
        import pyopencl.tools as cl_tools

        self.cl_array = cl_array
        self.array_type = cl_array.Array
        self.queue = queue
        self.fp64 = fp64
        self.pool = cl_tools.MemoryPool(cl_tools.ImmediateAllocator(queue))

    def unsupported_dtype_reason(self, dtype: np.dtype) -> str | None:
        # float16 is fine: vload_half/vstore_half are core OpenCL, cl_khr_fp16 is only for arithmetic.
        if dtype == np.float64 and not self.fp64:
            return "the device lacks cl_khr_fp64 (cast to float32 first)"
        return super().unsupported_dtype_reason(dtype)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        return self.cl_array.empty(self.queue, shape, dtype, allocator=self.pool)

    def copyin(self, host: np.ndarray) -> Any:
        return self.cl_array.to_device(self.queue, host, allocator=self.pool)

    def copyout(self, array: Any) -> np.ndarray:
        return array.get()  # a blocking read on the array's own queue, into a new numpy array

    def trim(self) -> None:
        self.pool.free_held()
