"""A thin ctypes binding to oneDNN's C API (libdnnl.so.3), just what the ONEDNN engine uses.

oneDNN ships as a wheel with the shared library and no Python module (``pip install
onednn-cpu-gomp``, the ``onednn`` extra). Every handle here is an opaque pointer; memory layouts
are named with oneDNN's string tags ("abcd", "aBcd8b", ...) or "any", so no table of format-tag
enum values is needed. The library is found in ``KAFFA_ONEDNN_LIB``, then among the installed
files of ``onednn-cpu-gomp``, then in ``<sys.prefix>/lib``, then on the loader's search path.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kaffa.errors import KaffaError

c_void_p, c_int, c_int64, c_float = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
_Dims = c_int64 * 12  # dnnl_dims_t (DNNL_MAX_NDIMS = 12)

# Values from oneDNN 3.x's dnnl_types.h / dnnl_common_types.h.
F32 = 3  # dnnl_f32
FORMAT_ANY = 1  # dnnl_format_tag_any
FORWARD_INFERENCE = 96
CONVOLUTION_DIRECT = 0x1
POOLING_MAX, POOLING_AVG_INCLUDE_PADDING, POOLING_AVG_EXCLUDE_PADDING = 0x1FF, 0x2FF, 0x3FF
ELTWISE_RELU = 0x20
ELTWISE_CLIP = 0x2E
ARG_SRC, ARG_DST, ARG_WEIGHTS, ARG_BIAS, ARG_SCRATCHPAD = 1, 17, 33, 41, 80
ARG_FROM, ARG_TO = ARG_SRC, ARG_DST  # a reorder's arguments
QUERY_IMPL_INFO_STR = 8
QUERY_SRC_MD, QUERY_WEIGHTS_MD, QUERY_DST_MD, QUERY_SCRATCHPAD_MD = 129, 131, 133, 136
QUERIES = (QUERY_SRC_MD, QUERY_WEIGHTS_MD, QUERY_DST_MD)
SCRATCHPAD_USER = 1  # dnnl_scratchpad_mode_user: the caller passes it, so any thread may execute


class DnnlError(KaffaError):
    """oneDNN refused a call (unsupported configuration, bad argument) or is not installed."""


class _Arg(ctypes.Structure):
    _fields_ = [("arg", c_int), ("memory", c_void_p)]


class _Version(ctypes.Structure):
    _fields_ = [
        ("major", c_int),
        ("minor", c_int),
        ("patch", c_int),
        ("hash", ctypes.c_char_p),
        ("cpu_runtime", ctypes.c_uint),
        ("gpu_runtime", ctypes.c_uint),
    ]


_STATUS = {
    1: "out of memory",
    2: "invalid arguments",
    3: "unimplemented",
    5: "runtime error",
    6: "not required",
}


def _candidates() -> list[str]:
    env = os.environ.get("KAFFA_ONEDNN_LIB")
    if env:
        return [env]
    out = []
    try:  # where pip put the wheel's library (a venv's or the user's lib/)
        from importlib.metadata import PackageNotFoundError, files

        for f in files("onednn-cpu-gomp") or ():
            if f.name == "libdnnl.so.3":
                out.append(str(Path(str(f.locate())).resolve()))
    except PackageNotFoundError:
        pass
    out.append(str(Path(sys.prefix) / "lib" / "libdnnl.so.3"))
    found = ctypes.util.find_library("dnnl")
    if found:
        out.append(found)
    return list(dict.fromkeys(out))


class _Library:
    """The loaded library with an engine and an in-order stream (one each per process)."""

    def __init__(self) -> None:
        errors = []
        for path in _candidates():
            try:
                self.lib = ctypes.CDLL(path)
                self.path = path
                break
            except OSError as e:
                errors.append(f"{path}: {e}")
        else:
            raise DnnlError(
                "oneDNN is not installed (pip install 'kaffa[onednn]'); tried " + "; ".join(errors)
            )
        lib = self.lib
        for name in (
            "dnnl_engine_create",
            "dnnl_stream_create",
            "dnnl_memory_desc_create_with_tag",
            "dnnl_memory_desc_create_with_string_tag",
            "dnnl_memory_desc_destroy",
            "dnnl_memory_desc_equal",
            "dnnl_memory_create",
            "dnnl_memory_set_data_handle",
            "dnnl_memory_destroy",
            "dnnl_primitive_attr_create",
            "dnnl_primitive_attr_destroy",
            "dnnl_primitive_attr_set_post_ops",
            "dnnl_primitive_attr_set_scratchpad_mode",
            "dnnl_post_ops_create",
            "dnnl_post_ops_destroy",
            "dnnl_post_ops_append_sum",
            "dnnl_post_ops_append_eltwise",
            "dnnl_convolution_forward_primitive_desc_create",
            "dnnl_reorder_primitive_desc_create",
            "dnnl_pooling_forward_primitive_desc_create",
            "dnnl_inner_product_forward_primitive_desc_create",
            "dnnl_primitive_desc_query",
            "dnnl_primitive_desc_destroy",
            "dnnl_primitive_create",
            "dnnl_primitive_execute",
            "dnnl_primitive_destroy",
            "dnnl_stream_wait",
        ):
            getattr(lib, name).restype = c_int
        lib.dnnl_primitive_desc_query_md.restype = c_void_p
        lib.dnnl_memory_desc_get_size.restype = ctypes.c_size_t
        lib.dnnl_post_ops_append_sum.argtypes = [c_void_p, c_float, c_int, c_int]
        lib.dnnl_post_ops_append_eltwise.argtypes = [c_void_p, c_int, c_float, c_float]
        lib.dnnl_primitive_desc_query_md.argtypes = [c_void_p, c_int, c_int]
        lib.dnnl_memory_desc_get_size.argtypes = [c_void_p]
        lib.dnnl_memory_desc_equal.argtypes = [c_void_p, c_void_p]
        lib.dnnl_memory_set_data_handle.argtypes = [c_void_p, c_void_p]
        lib.dnnl_primitive_execute.argtypes = [c_void_p, c_void_p, c_int, ctypes.POINTER(_Arg)]
        lib.dnnl_version.restype = ctypes.POINTER(_Version)
        self.engine, self.stream = c_void_p(), c_void_p()
        self.check(lib.dnnl_engine_create(ctypes.byref(self.engine), 1, 0), "engine_create")  # dnnl_cpu
        self.check(lib.dnnl_stream_create(ctypes.byref(self.stream), self.engine, 1), "stream_create")

    @staticmethod
    def check(status: int, what: str) -> None:
        if status != 0:
            raise DnnlError(f"oneDNN {what}: {_STATUS.get(status, f'status {status}')}")


_LIB: _Library | None = None
_LIB_ERROR: str | None = None
_LOCK = threading.Lock()


def library() -> _Library:
    """The loaded library, or DnnlError saying why it is not there (tried once per process)."""
    global _LIB, _LIB_ERROR
    with _LOCK:
        if _LIB is None and _LIB_ERROR is None:
            try:
                _LIB = _Library()
            except DnnlError as e:
                _LIB_ERROR = str(e)
        if _LIB is None:
            raise DnnlError(_LIB_ERROR or "oneDNN is not available")
        return _LIB


def unavailable() -> str | None:
    try:
        library()
    except DnnlError as e:
        return str(e)
    return None


class MemoryDesc:
    """An owned dnnl_memory_desc_t (or a borrowed one queried from a primitive descriptor)."""

    def __init__(self, handle: c_void_p, owned: bool = True) -> None:
        self.handle, self.owned = handle, owned

    @classmethod
    def make(cls, dims: Sequence[int], tag: str) -> MemoryDesc:
        """float32 ``dims`` laid out by a oneDNN string tag, or "any" to let a primitive choose."""
        lib = library()
        md = c_void_p()
        d = _Dims(*dims)
        if tag == "any":
            st = lib.lib.dnnl_memory_desc_create_with_tag(ctypes.byref(md), len(dims), d, F32, FORMAT_ANY)
        else:
            st = lib.lib.dnnl_memory_desc_create_with_string_tag(
                ctypes.byref(md), len(dims), d, F32, tag.encode()
            )
        lib.check(st, f"memory_desc {list(dims)} {tag}")
        return cls(md)

    @property
    def nbytes(self) -> int:
        return int(library().lib.dnnl_memory_desc_get_size(self.handle))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MemoryDesc) and bool(
            library().lib.dnnl_memory_desc_equal(self.handle, other.handle)
        )

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = None  # type: ignore[assignment]

    def __del__(self) -> None:
        if self.owned and _LIB is not None and self.handle:
            _LIB.lib.dnnl_memory_desc_destroy(self.handle)


class Memory:
    """A dnnl_memory_t over a caller-owned buffer, rebound per call with ``bind``."""

    def __init__(self, md: MemoryDesc) -> None:
        lib = library()
        self.md = md
        self.handle = c_void_p()
        lib.check(
            lib.lib.dnnl_memory_create(ctypes.byref(self.handle), md.handle, lib.engine, None), "memory"
        )

    def bind(self, a: np.ndarray) -> None:
        _LIB.lib.dnnl_memory_set_data_handle(self.handle, a.ctypes.data)  # type: ignore[union-attr]

    def __del__(self) -> None:
        if _LIB is not None and self.handle:
            _LIB.lib.dnnl_memory_destroy(self.handle)


def _aligned(nbytes: int, dtype: np.dtype) -> np.ndarray:
    """A 64-byte-aligned 1-D array of ``nbytes`` (oneDNN's own allocations are; its kernels may
    store with aligned vector instructions)."""
    raw = np.empty(nbytes + 64, np.uint8)
    off = -raw.ctypes.data % 64
    return raw[off : off + nbytes].view(dtype)


def buffer(md: MemoryDesc) -> np.ndarray:
    """An aligned float32 buffer big enough for ``md`` (blocked layouts pad channels)."""
    return _aligned(md.nbytes, np.dtype(np.float32))


class Attr:
    """Primitive attributes: a user-managed scratchpad, and sum and eltwise post-ops
    (act(primitive + dst))."""

    def __init__(
        self, sum_dst: bool = False, eltwise: int | None = None, alpha: float = 0.0, beta: float = 0.0
    ):
        lib = library()
        self.attr, po = c_void_p(), c_void_p()
        lib.check(lib.lib.dnnl_primitive_attr_create(ctypes.byref(self.attr)), "attr")
        lib.check(lib.lib.dnnl_primitive_attr_set_scratchpad_mode(self.attr, SCRATCHPAD_USER), "scratchpad")
        lib.check(lib.lib.dnnl_post_ops_create(ctypes.byref(po)), "post_ops")
        try:
            if sum_dst:
                lib.check(lib.lib.dnnl_post_ops_append_sum(po, 1.0, 0, 0), "post-op sum")
            if eltwise is not None:
                lib.check(lib.lib.dnnl_post_ops_append_eltwise(po, eltwise, alpha, beta), "post-op eltwise")
            lib.check(lib.lib.dnnl_primitive_attr_set_post_ops(self.attr, po), "set_post_ops")
        finally:
            lib.lib.dnnl_post_ops_destroy(po)

    def __del__(self) -> None:
        if _LIB is not None and self.attr:
            _LIB.lib.dnnl_primitive_attr_destroy(self.attr)


class Primitive:
    """A created primitive and its descriptor (and its scratchpad); ``Call`` runs it."""

    def __init__(self, pd: c_void_p) -> None:
        lib = library()
        self.pd, self.handle = pd, c_void_p()
        try:
            lib.check(lib.lib.dnnl_primitive_create(ctypes.byref(self.handle), pd), "primitive_create")
        except DnnlError:
            lib.lib.dnnl_primitive_desc_destroy(pd)
            self.pd = None
            raise
        # Primitives are made with a user scratchpad (any thread may run them); this one is theirs,
        # so callers must not run one primitive from two threads at once.
        scratch_md = self.md(QUERY_SCRATCHPAD_MD)
        self.scratch = _aligned(scratch_md.nbytes, np.dtype(np.uint8))
        self.scratch_mem = None
        if self.scratch.size:
            self.scratch_mem = Memory(scratch_md)
            self.scratch_mem.bind(self.scratch)

    def md(self, query: int) -> MemoryDesc:
        """A memory descriptor the primitive chose (valid while the primitive lives)."""
        return MemoryDesc(
            c_void_p(library().lib.dnnl_primitive_desc_query_md(self.pd, query, 0)), owned=False
        )

    @property
    def impl(self) -> str:
        """oneDNN's name for the implementation it picked (e.g. "jit:avx2")."""
        s = ctypes.c_char_p()
        library().lib.dnnl_primitive_desc_query(self.pd, QUERY_IMPL_INFO_STR, 0, ctypes.byref(s))
        return (s.value or b"").decode()

    def __del__(self) -> None:
        if _LIB is not None:
            if self.handle:
                _LIB.lib.dnnl_primitive_destroy(self.handle)
            if self.pd:
                _LIB.lib.dnnl_primitive_desc_destroy(self.pd)


def _forward(what: str, *args: object, attr: Attr | None = None) -> Primitive:
    """``dnnl_<what>_forward_primitive_desc_create(&pd, engine, forward_inference, *args, attr)``,
    then the primitive."""
    lib = library()
    pd, attr = c_void_p(), attr or Attr()
    create = getattr(lib.lib, f"dnnl_{what}_forward_primitive_desc_create")
    lib.check(create(ctypes.byref(pd), lib.engine, FORWARD_INFERENCE, *args, attr.attr), what)
    return Primitive(pd)


def _md(md: MemoryDesc | None) -> c_void_p | None:
    return None if md is None else md.handle


def convolution(
    src: MemoryDesc,
    weights: MemoryDesc,
    bias: MemoryDesc | None,
    dst: MemoryDesc,
    strides: Sequence[int],
    dilations: Sequence[int],
    pad_l: Sequence[int],
    pad_r: Sequence[int],
    attr: Attr,
) -> Primitive:
    """A forward-inference convolution; ``dilations`` as ONNX counts them (1 = dense)."""
    return _forward(
        "convolution",
        CONVOLUTION_DIRECT,
        src.handle,
        weights.handle,
        _md(bias),
        dst.handle,
        _Dims(*strides),
        _Dims(*(d - 1 for d in dilations)),  # oneDNN counts the gaps
        _Dims(*pad_l),
        _Dims(*pad_r),
        attr=attr,
    )


def pooling(
    alg: int,
    src: MemoryDesc,
    dst: MemoryDesc,
    strides: Sequence[int],
    kernel: Sequence[int],
    dilations: Sequence[int],
    pad_l: Sequence[int],
    pad_r: Sequence[int],
) -> Primitive:
    """A forward-inference max or average pooling; ``dilations`` as ONNX counts them."""
    return _forward(
        "pooling",
        alg,
        src.handle,
        dst.handle,
        _Dims(*strides),
        _Dims(*kernel),
        _Dims(*(d - 1 for d in dilations)),
        _Dims(*pad_l),
        _Dims(*pad_r),
    )


def inner_product(
    src: MemoryDesc, weights: MemoryDesc, bias: MemoryDesc | None, dst: MemoryDesc
) -> Primitive:
    """A forward-inference inner product: dst [N, M] = src [N, K] x weights [M, K]ᵀ (+ bias [M])."""
    return _forward("inner_product", src.handle, weights.handle, _md(bias), dst.handle)


def reorder(src: MemoryDesc, dst: MemoryDesc) -> Primitive:
    lib = library()
    pd = c_void_p()
    attr = Attr()
    st = lib.lib.dnnl_reorder_primitive_desc_create(
        ctypes.byref(pd), src.handle, lib.engine, dst.handle, lib.engine, attr.attr
    )
    lib.check(st, "reorder")
    return Primitive(pd)


class Call:
    """``prim`` with its argument list built once: calling it runs the primitive on whatever its
    memories are bound to then (the per-op hot path is two ctypes calls)."""

    def __init__(self, prim: Primitive, args: Sequence[tuple[int, Memory]]) -> None:
        lib = library()
        if prim.scratch_mem is not None:
            args = [*args, (ARG_SCRATCHPAD, prim.scratch_mem)]
        self.prim = prim  # keeps the primitive and its memories alive
        self.memories = [m for _, m in args]
        self._n = len(args)
        self._args = (_Arg * self._n)(*(_Arg(a, m.handle) for a, m in args))
        self._execute, self._wait = lib.lib.dnnl_primitive_execute, lib.lib.dnnl_stream_wait
        self._stream = lib.stream

    def __call__(self) -> None:
        status = self._execute(self.prim.handle, self._stream, self._n, self._args)
        if status == 0:
            status = self._wait(self._stream)  # the cpu stream runs synchronously; this is cheap
        if status != 0:
            _Library.check(status, "execute")


def version() -> str:
    v = library().lib.dnnl_version().contents
    return f"{v.major}.{v.minor}.{v.patch}"
