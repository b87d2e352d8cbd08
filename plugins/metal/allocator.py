"""Host <-> device copies for metal: wgpu storage buffers from a size-bucketed pool, wrapped in
``MetalArray`` (buffer + shape + dtype). A buffer goes back to the pool when its array is
garbage-collected.

WGSL has 32-bit scalars, and 16-bit floats behind the ``shader-f16`` feature; nothing else can
live here. Every array is bound whole as one storage buffer, so an array may not exceed the
device's ``max_storage_buffer_binding_size`` (nor ``max_buffer_size``).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from kaffa.errors import DeviceError
from kaffa.runtime import Allocator, BufferPool, DeviceArray, one_line

_ALIGN = 4  # COPY_BUFFER_ALIGNMENT: sizes of buffer writes and reads are multiples of 4 bytes


def _padded(nbytes: int) -> int:
    return max(_ALIGN, -(-nbytes // _ALIGN) * _ALIGN)


class MetalArray(DeviceArray):
    """A wgpu storage buffer holding ``shape``/``dtype`` elements from offset 0 (the buffer may be
    larger: it comes from a size bucket)."""

    __slots__ = ()


class WGPUBufferPool(BufferPool):
    def __init__(self, device: Any, usage: int, label: str):
        super().__init__()
        self.device = device
        self.usage = usage
        self.label = label

    def _create(self, capacity: int) -> Any:
        try:
            return self.device.create_buffer(size=capacity, usage=self.usage)
        except Exception:
            self.trim()  # cached buffers may be what is in the way; try once more without them
        try:
            return self.device.create_buffer(size=capacity, usage=self.usage)
        except Exception as e:
            raise DeviceError(
                f"{self.label} could not allocate {capacity} bytes: {type(e).__name__}: {one_line(e)}"
            ) from None

    def _destroy(self, buffer: Any) -> None:
        buffer.destroy()


class MetalAllocator(Allocator):
    array_type = MetalArray

    def __init__(self, label: str, wgpu: Any, device: Any, index: int, f16: bool):
        limits = device.limits
        max_buffer = int(limits["max-buffer-size"])
        max_binding = int(limits["max-storage-buffer-binding-size"])
        which = (
            "max_storage_buffer_binding_size: every array is bound whole"
            if max_binding <= max_buffer
            else "max_buffer_size"
        )
        # Leave room for the padding to 4 bytes, so that a checked array always fits its buffer.
        super().__init__(label, (min(max_buffer, max_binding) // _ALIGN) * _ALIGN, which)
        self.device = device
        self.queue = device.queue
        self.index = index
        self.f16 = f16
        usage = wgpu.BufferUsage
        self.pool = WGPUBufferPool(device, usage.STORAGE | usage.COPY_SRC | usage.COPY_DST, label)
        self._fence: Any = None

    def unsupported_dtype_reason(self, dtype: np.dtype) -> str | None:
        base = super().unsupported_dtype_reason(dtype)
        if base is not None:
            return base
        if dtype == np.float64:
            return "WGSL has no 64-bit floats (cast to float32 first)"
        if dtype in (np.int64, np.uint64):
            return f"WGSL has no 64-bit integers (cast {dtype.name} to int32 first)"
        if dtype == np.float16 and not self.f16:
            return "float16 needs the WebGPU feature 'shader-f16', which this adapter lacks"
        if dtype == np.bool_:
            return "WGSL bool cannot be stored in a buffer (cast to int32 first)"
        if dtype.kind in "iu" and dtype.itemsize < 4:
            return f"WGSL has no {dtype.itemsize * 8}-bit integers (cast {dtype.name} to int32 first)"
        if dtype not in (np.float32, np.int32, np.uint32, np.float16):
            return f"WGSL has no {dtype.name} type"
        return None

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> MetalArray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        buffer, capacity = self.pool.alloc(_padded(nbytes), self.max_alloc)
        array = MetalArray(buffer, shape, dtype, self.index)
        weakref.finalize(array, self.pool.release, buffer, capacity).atexit = False
        return array

    def copyin(self, host: np.ndarray) -> MetalArray:
        array = self.empty(host.shape, host.dtype)
        if host.nbytes:
            data = host.reshape(-1).view(np.uint8)
            if host.nbytes % _ALIGN:
                data = np.concatenate([data, np.zeros(_padded(host.nbytes) - host.nbytes, np.uint8)])
            self.queue.write_buffer(array.buffer, 0, data)
        return array

    def copyout(self, array: MetalArray) -> np.ndarray:
        if array.device_index != self.index:  # a wgpu buffer is only readable through its own device
            raise DeviceError(f"{self.label} was handed {array!r}, which lives on metal:{array.device_index}")
        if array.size == 0:
            return np.empty(array.shape, array.dtype)
        view = self.queue.read_buffer(array.buffer, 0, _padded(array.nbytes))  # waits for the queue
        out = np.frombuffer(view, dtype=array.dtype, count=array.size).reshape(array.shape)
        return out if out.flags.writeable else out.copy()

    def fence(self) -> None:
        """Wait for all submitted work: a read-back is ordered after it and blocks until done
        (wgpu 0.32's on_submitted_work_done is broken)."""
        if self._fence is None:
            self._fence, _ = self.pool.alloc(_ALIGN)
        self.queue.read_buffer(self._fence, 0, _ALIGN)

    def trim(self) -> None:
        self.pool.trim()
