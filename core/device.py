"""Devices: the open table of DeviceOption.device_type numbers, and the Device value type.

Caffe2 keeps the wire enum (DeviceTypeProto) separate from the runtime device type; so do we.
The wire number is what a NetDef stores; the runtime name ("cpu", "cuda", ...) is what a backend
plugin registers. Plugins may claim numbers outside Caffe2's enum.
"""

from __future__ import annotations

from dataclasses import dataclass

from kaffa.proto import DeviceOption

CPU = 0
CUDA = 1
MKLDNN = 2
OPENGL = 3
OPENCL = 4
IDEEP = 5
HIP = 6
FPGA = 7
METAL = 20  # Caffe2 never used 20; see kaffa.proto.
ONLY_FOR_TEST = 20901

# Names of Caffe2's numbers, for messages about device types no installed plugin serves.
WELL_KNOWN: dict[int, str] = {
    CPU: "cpu",
    CUDA: "cuda",
    MKLDNN: "mkldnn",
    OPENGL: "opengl",
    OPENCL: "opencl",
    IDEEP: "ideep",
    HIP: "hip",
    FPGA: "fpga",
    8: "msnpu",
    9: "xla",
    10: "mlc",
    METAL: "metal",
    ONLY_FOR_TEST: "test",
}


@dataclass(frozen=True, order=True)
class Device:
    """A backend name plus a device index: ``cpu``, ``cuda:1``."""

    backend: str
    index: int = 0

    def __str__(self) -> str:
        return self.backend if self.backend == "cpu" else f"{self.backend}:{self.index}"

    @classmethod
    def parse(cls, text: str | Device) -> Device:
        if isinstance(text, Device):
            return text
        name, _, idx = str(text).partition(":")
        return cls(name.strip().lower(), int(idx) if idx else 0)


HOST = Device("cpu", 0)


def device_option(device: str | int | Device = "cpu", device_id: int = 0, random_seed: int | None = None):
    """Build a DeviceOption from a backend name ("cuda", "cuda:1"), a wire number, or a Device."""
    from kaffa.plugins import registry  # late: the plugin registry knows plugin device numbers

    opt = DeviceOption()
    if isinstance(device, (int,)) and not isinstance(device, bool):
        opt.device_type = device
        opt.device_id = device_id
    else:
        dev = Device.parse(device)
        opt.device_type = registry().device_type_of(dev.backend)
        opt.device_id = dev.index if dev.index else device_id
    if random_seed is not None:
        opt.random_seed = random_seed
    return opt
