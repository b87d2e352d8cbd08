"""The 'numba' backend: host memory (numpy arrays), kernels compiled by numba."""

from __future__ import annotations

from kaffa.backend import DeviceInfo, HostBackend


class NumbaBackend(HostBackend):
    name = "numba"
    device_type = 1001  # from the range kaffa leaves to out-of-tree backends (1000-9999)

    def __init__(self) -> None:
        try:
            import numba
        except ImportError as e:  # listed by `kaffa info` with the reason instead of vanishing
            self._reason: str | None = f"numba is not importable ({e}); pip install numba"
            self.version = ""
        else:
            self._reason = None
            self.version = f"numba {numba.__version__}"

    def unavailable_reason(self) -> str | None:
        return self._reason

    def devices(self) -> list[DeviceInfo]:
        if self._reason is not None:
            return []
        import numba

        threads = numba.config.NUMBA_NUM_THREADS
        return [DeviceInfo(0, "host CPU (numba JIT)", "cpu", None, f"LLVM via numba, {threads} threads")]
