"""The metal backend object and its devices: the WebGPU adapters wgpu finds, on one native API.

wgpu often sees one GPU twice (Vulkan and OpenGL on Linux, D3D12 and Vulkan on Windows), so only
the adapters of the best API present are listed: Metal, then Vulkan, D3D12, OpenGL (wgpu's own
``WGPU_BACKEND_TYPE`` picks another). Within it GPUs come before CPU rasterizers, otherwise in
wgpu's order.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

from kaffa.backend import DeviceInfo
from kaffa.device import METAL
from kaffa.runtime import DeviceBackend, RuntimeDevice, Unavailable, lazy_import, one_line
from kaffa_metal.allocator import MetalAllocator, MetalArray

API_ORDER = ("Metal", "Vulkan", "D3D12", "OpenGL")
_KIND = {"DiscreteGPU": "gpu", "IntegratedGPU": "gpu", "VirtualGPU": "gpu", "CPU": "cpu"}
_KIND_ORDER = {"DiscreteGPU": 0, "IntegratedGPU": 1, "VirtualGPU": 2, "CPU": 3}
# The limits that bound one array; the device is asked for the adapter's maxima, not the defaults.
LIMITS = ("max-buffer-size", "max-storage-buffer-binding-size")
# Asked for at the adapter's maxima too: WebGPU's default of 8 storage buffers per shader is less
# than an optimizer update (Adam binds 11) or a batch-norm pass needs.
KERNEL_LIMITS = (
    "max-storage-buffers-per-shader-stage",
    "max-compute-workgroup-storage-size",
    "max-compute-invocations-per-workgroup",
    "max-compute-workgroup-size-x",
    "max-compute-workgroup-size-y",
)


def _api(info: Any) -> str:
    """Plain words for what runs underneath, e.g. 'Vulkan via wgpu on lavapipe, Mesa 22.3.6'."""
    api = info["backend_type"]
    text = f"{api} via wgpu"
    if "llvmpipe" in info["device"]:  # Mesa's CPU driver: lavapipe under Vulkan, llvmpipe under GL
        text += " on lavapipe" if api == "Vulkan" else " on llvmpipe"
    description = one_line(info.get("description", ""))
    return f"{text}, {description}" if description else text


class MetalDevice(RuntimeDevice):
    """One adapter. Its wgpu device and queue are requested on first use."""

    def __init__(self, info: DeviceInfo, wgpu: Any, adapter: Any):
        super().__init__(info)
        self.wgpu = wgpu
        self.adapter = adapter
        self.device: Any = None

    def _open(self) -> MetalAllocator:
        f16 = "shader-f16" in self.adapter.features
        self.device = self.adapter.request_device_sync(
            label=f"kaffa metal:{self.info.index}",
            required_features=["shader-f16"] if f16 else [],
            required_limits={k: self.adapter.limits[k] for k in (*LIMITS, *KERNEL_LIMITS)},
        )
        return MetalAllocator(
            f"metal:{self.info.index} ({self.info.name}, {self.info.api.split(',')[0]})",
            self.wgpu,
            self.device,
            self.info.index,
            f16=f16,
        )

    def synchronize(self) -> None:
        if self._allocator is not None:
            self._allocator.fence()


class MetalBackend(DeviceBackend):
    name = "metal"
    device_type = METAL
    _array_types = (MetalArray,)

    def _discover(self) -> list[MetalDevice]:
        if not os.environ.get("XDG_RUNTIME_DIR"):
            # Mesa's Vulkan loader prints "XDG_RUNTIME_DIR is invalid" once per adapter on headless
            # machines (CI, containers); a private temp dir keeps stderr clean. We never draw.
            runtime_dir = os.path.join(tempfile.gettempdir(), f"kaffa-xdg-{os.getuid()}")
            os.makedirs(runtime_dir, mode=0o700, exist_ok=True)
            os.environ["XDG_RUNTIME_DIR"] = runtime_dir
        wgpu = lazy_import("wgpu", "metal")
        self._version = f"wgpu {wgpu.__version__}"
        try:
            adapters = wgpu.gpu.enumerate_adapters_sync()
        except Exception as e:
            raise Unavailable(f"no WebGPU adapter: {type(e).__name__}: {one_line(e)}") from None
        if not adapters:
            raise Unavailable(
                "no WebGPU adapter: wgpu found none (on Linux install a Vulkan driver, "
                "e.g. Debian's mesa-vulkan-drivers)"
            )
        apis = list(dict.fromkeys(a.info["backend_type"] for a in adapters))
        wanted = os.environ.get("WGPU_BACKEND_TYPE", "").strip()
        order = (wanted, *API_ORDER) if wanted else API_ORDER
        api = next((a for a in order if a in apis), apis[0])
        chosen = sorted(
            (a for a in adapters if a.info["backend_type"] == api),
            key=lambda a: _KIND_ORDER.get(a.info["adapter_type"], 4),
        )
        found = []
        for i, adapter in enumerate(chosen):
            info, limits = adapter.info, adapter.limits
            found.append(
                MetalDevice(
                    DeviceInfo(
                        index=i,
                        name=one_line(info["device"]) or adapter.summary,
                        kind=_KIND.get(info["adapter_type"], "other"),
                        memory=None,  # WebGPU does not tell
                        api=_api(info),
                        details={
                            "adapter_type": info["adapter_type"],
                            "vendor": info["vendor"],
                            "apis_seen": ", ".join(apis),
                            "shader_f16": str("shader-f16" in adapter.features),
                            **{k.replace("-", "_"): str(limits[k]) for k in LIMITS},
                        },
                    ),
                    wgpu,
                    adapter,
                )
            )
        return found


# One per process: discovery is cached on it, and a reloaded registry reuses it.
BACKEND = MetalBackend()
