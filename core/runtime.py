"""Host-side pieces every device plugin shares (opencl, cuda, metal and third-party ones).

A device plugin reads like a tinygrad runtime: a ``device.py`` whose backend finds the devices
(``DeviceBackend``) and whose device objects own a queue and ``synchronize()`` (``RuntimeDevice``),
and an ``allocator.py`` that moves arrays between host and device (``Allocator``). What they have
in common lives here, so that each plugin only writes what is specific to its native API:

- ``lazy_import``: optional libraries are imported inside discovery, never at plugin import, and
  a missing or broken library becomes the backend's unavailable reason instead of an exception.
- ``DeviceBackend``: discovery runs once, is cached, and turns ``Unavailable`` into the reason.
- ``DeviceArray`` and ``BufferPool``: a shape+dtype array over a raw buffer, and a size-bucketed
  LRU cache of freed buffers, for APIs (wgpu) that have no array type or memory pool of their own.
"""

from __future__ import annotations

import importlib
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict, deque
from types import ModuleType
from typing import Any

import numpy as np

from kaffa.backend import Backend, DeviceInfo
from kaffa.errors import DeviceError


class Unavailable(Exception):
    """Raised by discovery: the backend cannot run here, and ``reason`` says why in one line."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def lazy_import(module: str, extra: str, label: str | None = None) -> ModuleType:
    """Import an optional library, or raise ``Unavailable`` with an install hint.

    ``extra`` names the kaffa extra that installs it (``pip install 'kaffa[opencl]'``)."""
    label = label or module
    try:
        return importlib.import_module(module)
    except ImportError as e:
        # A None entry in sys.modules (how tests simulate a missing library) also lands here.
        if e.name in (module, module.split(".")[0]):
            raise Unavailable(f"{label} is not installed (pip install 'kaffa[{extra}]')") from None
        raise Unavailable(f"{label} failed to import: {type(e).__name__}: {one_line(e)}") from None
    except Exception as e:  # a broken install (missing shared library, ABI mismatch) must not escape
        raise Unavailable(f"{label} failed to import: {type(e).__name__}: {one_line(e)}") from None


def one_line(text: object) -> str:
    """Native error messages often span lines; a reason is one line."""
    return " ".join(str(text).split())


def _size(nbytes: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.4g} {unit}"
    return f"{nbytes} bytes"


class DeviceArray:
    """An array in device memory: a raw buffer plus shape and dtype (numpy's vocabulary, so that
    ``TensorInfo.of`` and error messages read it like any other blob)."""

    __slots__ = ("__weakref__", "buffer", "device_index", "dtype", "shape")

    def __init__(self, buffer: Any, shape: tuple[int, ...], dtype: np.dtype, device_index: int = 0):
        self.buffer = buffer
        self.shape = tuple(int(d) for d in shape)
        self.dtype = np.dtype(dtype)
        self.device_index = device_index

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.dtype.name}{list(self.shape)}, device {self.device_index})"


class BufferPool(ABC):
    """Freed buffers kept for reuse, keyed by a rounded-up size, dropped least recently freed first
    once more than ``cache_limit`` bytes are held (tinygrad's LRUAllocator, with size buckets so
    that slightly different shapes share buffers). Subclasses create and destroy native buffers.

    ``release`` usually runs in a finalizer, i.e. inside garbage collection at any point of any
    thread, even within ``alloc``; so it only queues the buffer, and the queue is drained under
    the lock by the next ``alloc``, ``trim`` or ``stats``."""

    def __init__(self, cache_limit: int = 1 << 30):
        self.cache_limit = cache_limit
        self._held = 0  # bytes cached, free
        self._active = 0  # bytes handed out
        self._free: dict[int, list[Any]] = {}
        self._lru: OrderedDict[int, tuple[int, Any]] = OrderedDict()  # id(buffer) -> (capacity, buffer)
        self._returned: deque[tuple[Any, int]] = deque()  # appends are atomic: safe from finalizers
        self._lock = threading.Lock()

    @staticmethod
    def bucket(nbytes: int) -> int:
        """Powers of two up to 1 MiB, then multiples of 1/8 of the power of two (<= 12.5% waste)."""
        n = max(int(nbytes), 256)
        p = 1 << (n - 1).bit_length()
        if p <= 1 << 20:
            return p
        step = p // 8
        return -(-n // step) * step

    @abstractmethod
    def _create(self, capacity: int) -> Any: ...

    @abstractmethod
    def _destroy(self, buffer: Any) -> None: ...

    def alloc(self, nbytes: int, max_capacity: int | None = None) -> tuple[Any, int]:
        """A buffer of at least ``nbytes`` and its capacity (never above ``max_capacity``)."""
        capacity = self.bucket(nbytes)
        if max_capacity is not None:
            capacity = max(min(capacity, max_capacity), nbytes)
        buffer = None
        with self._lock:
            dropped = self._collect()
            cached = self._free.get(capacity)
            if cached:
                buffer = cached.pop()
                del self._lru[id(buffer)]
                self._held -= capacity
            self._active += capacity
        self._destroy_all(dropped)
        if buffer is None:
            try:
                buffer = self._create(capacity)
            except BaseException:
                with self._lock:
                    self._active -= capacity
                raise
        return buffer, capacity

    def release(self, buffer: Any, capacity: int) -> None:
        """Give a buffer back (called when the array owning it is garbage-collected)."""
        self._returned.append((buffer, capacity))

    def stats(self) -> tuple[int, int]:
        """(bytes handed out, bytes cached for reuse)."""
        with self._lock:
            dropped = self._collect()
            active, held = self._active, self._held
        self._destroy_all(dropped)
        return active, held

    def trim(self) -> None:
        """Destroy every cached buffer (call before asking the device for a lot of memory)."""
        with self._lock:
            dropped = self._collect()
            dropped += [self._pop_oldest() for _ in range(len(self._lru))]
        self._destroy_all(dropped)

    def _collect(self) -> list[Any]:
        """Cache the returned buffers, under the lock; returns those to destroy (outside it)."""
        dropped = []
        while self._returned:
            buffer, capacity = self._returned.popleft()
            self._active -= capacity
            if capacity > self.cache_limit:
                dropped.append(buffer)
                continue
            while self._held + capacity > self.cache_limit and self._lru:
                dropped.append(self._pop_oldest())
            self._free.setdefault(capacity, []).append(buffer)
            self._lru[id(buffer)] = (capacity, buffer)
            self._held += capacity
        return dropped

    def _pop_oldest(self) -> Any:
        _, (capacity, buffer) = self._lru.popitem(last=False)
        self._free[capacity].remove(buffer)
        self._held -= capacity
        return buffer

    def _destroy_all(self, buffers: list[Any]) -> None:
        for b in buffers:
            self._destroy(b)


class Allocator(ABC):
    """Host <-> device copies and allocation for one device.

    ``unsupported_dtype_reason`` is the single place a plugin says which dtypes can live on the
    device; ``copyin``/``empty`` refuse the others with a DeviceError carrying that reason."""

    #: the array type this allocator hands out (for clear errors about misplaced blobs)
    array_type: type = object

    def __init__(self, label: str, max_alloc: int | None = None, max_alloc_why: str = ""):
        self.label = label  # "opencl:0", for messages
        self.max_alloc = max_alloc  # the largest array the device takes, in bytes
        self.max_alloc_why = max_alloc_why  # which device limit that is

    def unsupported_dtype_reason(self, dtype: np.dtype) -> str | None:
        dtype = np.dtype(dtype)
        if dtype.kind in "OUSV" or dtype.hasobject:
            return f"{dtype} arrays (strings, objects, records) live on cpu only"
        return None

    def check(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        """Raise DeviceError, before touching the device, if such an array cannot live on it."""
        dtype = np.dtype(dtype)
        reason = self.unsupported_dtype_reason(dtype)
        if reason is not None:
            raise DeviceError(f"cannot place {dtype.name}{list(shape)} on {self.label}: {reason}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if self.max_alloc is not None and nbytes > self.max_alloc:
            raise DeviceError(
                f"cannot place {dtype.name}{list(shape)} on {self.label}: it needs {nbytes:,} bytes and "
                f"the device takes at most {self.max_alloc:,} ({_size(self.max_alloc)}) per array "
                f"({self.max_alloc_why})"
            )

    def check_array(self, array: Any) -> None:
        if not isinstance(array, self.array_type):
            got, want = type(array), self.array_type
            raise DeviceError(
                f"{self.label} was handed a {got.__module__}.{got.__name__}, not a "
                f"{want.__module__}.{want.__name__} (blobs cross devices only through the planner's copies)"
            )

    @abstractmethod
    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> Any:
        """An uninitialised device array (kernels allocate their outputs with this)."""

    @abstractmethod
    def copyin(self, host: np.ndarray) -> Any:
        """A new device array holding a copy of the contiguous numpy array ``host``."""

    @abstractmethod
    def copyout(self, array: Any) -> np.ndarray:
        """A new, writable numpy array holding a copy of ``array``."""

    @abstractmethod
    def trim(self) -> None:
        """Free cached memory (freed arrays the pool keeps for reuse)."""


class RuntimeDevice(ABC):
    """One device: what discovery learned (``info``) plus, created on first use, the native
    context and queue and the allocator over them."""

    def __init__(self, info: DeviceInfo):
        self.info = info
        self._allocator: Allocator | None = None
        self._lock = threading.Lock()

    @property
    def allocator(self) -> Allocator:
        if self._allocator is None:
            with self._lock:
                if self._allocator is None:
                    try:
                        self._allocator = self._open()
                    except DeviceError:
                        raise
                    except Exception as e:
                        raise DeviceError(
                            f"could not open device {self.info.index} ({self.info.name}): "
                            f"{type(e).__name__}: {one_line(e)}"
                        ) from e
        return self._allocator

    @abstractmethod
    def _open(self) -> Allocator:
        """Create the native context/queue and return the allocator that uses them."""

    @abstractmethod
    def synchronize(self) -> None:
        """Wait until the device's queue is empty."""


class DeviceBackend(Backend):
    """A backend over an optional native library. Subclasses implement ``_discover``, which imports
    the library with ``lazy_import`` and returns one ``RuntimeDevice`` per device in a stable order,
    or raises ``Unavailable``. It runs once (it can take a second) and its result is cached."""

    # Set by ``_discover`` once the library is imported (they name its version and array type).
    _version: str = ""
    _array_types: tuple[type, ...] = ()

    def __init__(self) -> None:
        self._found: list[RuntimeDevice] | None = None
        self._reason: str | None = None
        self._discover_lock = threading.Lock()

    @abstractmethod
    def _discover(self) -> list[RuntimeDevice]: ...

    @property  # type: ignore[override]
    def version(self) -> str:
        self._discovered()
        return self._version

    @property  # type: ignore[override]
    def array_types(self) -> tuple[type, ...]:
        self._discovered()
        return self._array_types

    def _discovered(self) -> list[RuntimeDevice]:
        if self._found is None:
            with self._discover_lock:
                if self._found is None:
                    try:
                        found = self._discover()
                        reason = None if found else "no devices found"
                    except Unavailable as e:
                        found, reason = [], e.reason
                    except Exception as e:  # discovery must never take kaffa down; say what broke
                        found, reason = [], f"device discovery failed: {type(e).__name__}: {one_line(e)}"
                    self._reason = reason
                    self._found = found
        return self._found

    def devices(self) -> list[DeviceInfo]:
        return [d.info for d in self._discovered()]

    def unavailable_reason(self) -> str | None:
        self._discovered()
        return self._reason

    def device(self, index: int = 0) -> RuntimeDevice:
        found = self._discovered()
        if self._reason is not None:
            raise DeviceError(f"backend '{self.name}' is unavailable: {self._reason}")
        if not 0 <= index < len(found):
            raise DeviceError(
                f"backend '{self.name}' has {len(found)} device(s); device {index} does not exist"
            )
        return found[index]

    def unsupported_dtype_reason(self, dtype: np.dtype | str | type, device_index: int = 0) -> str | None:
        """Why arrays of ``dtype`` cannot live on device ``device_index`` (None if they can)."""
        return self.device(device_index).allocator.unsupported_dtype_reason(np.dtype(dtype))

    # -- memory ------------------------------------------------------------------------------------
    def from_host(self, array: np.ndarray, device_index: int = 0) -> Any:
        alloc = self.device(device_index).allocator
        host = np.asarray(array, order="C")  # not ascontiguousarray: it turns 0-d arrays into 1-d
        alloc.check(host.shape, host.dtype)
        return alloc.copyin(host)

    def to_host(self, array: Any, device_index: int = 0) -> np.ndarray:
        alloc = self.device(device_index).allocator
        alloc.check_array(array)
        return alloc.copyout(array)

    def empty(self, shape: tuple[int, ...], dtype: np.dtype | str | type, device_index: int = 0) -> Any:
        alloc = self.device(device_index).allocator
        alloc.check(tuple(shape), np.dtype(dtype))
        return alloc.empty(tuple(shape), np.dtype(dtype))

    def synchronize(self, device_index: int = 0) -> None:
        self.device(device_index).synchronize()
