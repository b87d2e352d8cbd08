"""Sub-nets: run a NetDef inside a kernel, with bound inputs, in a private child workspace.

kaffa's executor calls kernels as pure functions ``run(*inputs) -> outputs`` over slots, so an op
that runs a net (If, While, Do, RecurrentNetwork) never reaches into the outer workspace. Instead,
as Caffe2's python helpers did, the op lists every outer blob its sub-nets read as an explicit
input, and its kernel binds those values to names in a *child workspace* of its own, runs the
sub-net there, and returns the values of chosen blobs::

    runner = SubnetRunner(then_net, inputs=["x", "w"], outputs=["y"], name="If.then_net")
    (y,) = runner(x_value, w_value)          # positional, in ``inputs`` order
    out = runner.run({"x": x_value, "w": w_value}, outputs=["y", "h"])   # or by name

Planning is cached: the runner keeps one child workspace and one created ``kaffa.net.Net``, whose
plans are keyed (as every net's are) by the dtype and device of what it reads, so calling it in a
loop plans once. Values are bound without copying (kernels never write into their inputs) and the
child workspace is emptied after each call, so it holds nothing between calls. A failure inside the
sub-net raises the usual typed error naming the sub-net's op; nothing leaks out of a failed call.

Helpers:

* ``reads(net)`` / ``writes(net)``: the blobs a net reads before writing them (what must be bound)
  and every blob it writes, in order.
* ``infer(net, infos, outputs)``: shape/dtype inference through the sub-net's schemas (for the
  control ops' own shape inference at net creation).
* ``backward_net(net, inputs, g_outputs, g_inputs)``: a net that recomputes ``net`` and runs its
  gradient ops (``kaffa.gradients``), writing each input's gradient under a chosen name, zeros
  where the sub-net does not depend on it. The gradient of If and Do is the same op over such nets.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from kaffa.device import HOST, Device
from kaffa.errors import ExecutionError, OperatorError, OpLocation
from kaffa.proto import DeviceOption, NetDef, OperatorDef
from kaffa.schema import SCHEMAS, UNKNOWN, TensorInfo

__all__ = ["SubnetRunner", "backward_net", "infer", "reads", "writes"]


def reads(net: NetDef, bound: Iterable[str] = ()) -> list[str]:
    """Blobs ``net`` reads before any of its ops writes them (in first-read order): what a caller
    must bind. Names in ``bound`` count as already written."""
    produced = set(bound)
    out: list[str] = []
    for op in net.op:
        for name in op.input:
            if name and name not in produced and name not in out:
                out.append(name)
        produced.update(op.output)
    return out


def writes(net: NetDef) -> list[str]:
    """Every blob an op of ``net`` writes, in first-write order."""
    out: list[str] = []
    for op in net.op:
        for name in op.output:
            if name not in out:
                out.append(name)
    return out


def infer(
    net: NetDef, infos: Mapping[str, TensorInfo], outputs: Sequence[str], what: str = ""
) -> list[TensorInfo]:
    """What the schemas say ``outputs`` of ``net`` will be, given ``infos`` for the bound blobs
    (unbound names are unknown). A bound blob the net does not write comes back as it went in.
    Raises the op's ShapeError (or SchemaError) with the sub-net op's location."""
    env: dict[str, TensorInfo] = dict(infos)
    label = what or net.name or "sub-net"
    for idx, op in enumerate(net.op):
        loc = OpLocation(label, idx, op.type, op.name)
        try:
            schema = SCHEMAS.get(op.type)
            schema.check_arity(op)
            args = schema.parse_args(op.arg)
            outs = schema.infer_outputs(args, [env.get(n, UNKNOWN) for n in op.input], len(op.output))
        except OperatorError as e:
            raise e.at(loc) from None
        env.update(zip(op.output, outs))
    return [env.get(name, UNKNOWN) for name in outputs]


def _move(value: Any, src: Device, dst: Device) -> Any:
    """``value`` (an array on ``src``) as an array on ``dst``."""
    if src == dst:
        return value
    from kaffa.plugins import registry

    reg = registry()
    sb, db = reg.backend(src.backend), reg.backend(dst.backend)
    if src.backend == dst.backend:
        return sb.copy_between(value, src.index, dst.index)
    host = value if src.backend == "cpu" else sb.to_host(value, src.index)
    return host if dst.backend == "cpu" else db.from_host(host, dst.index)


class SubnetRunner:
    """Runs one NetDef many times in a private child workspace (see the module docstring).

    ``inputs``: the inner names positional call arguments bind to. ``outputs``: the inner names a
    positional call returns. ``device``: where the caller's values live and where results are
    returned (also the sub-net's default device when it names none). ``policy``: the placement
    policy of the child net (``"fallback"`` or ``"strict"``).
    """

    def __init__(
        self,
        net: NetDef,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        *,
        device: Device = HOST,
        policy: str = "fallback",
        name: str = "",
    ) -> None:
        proto = NetDef()
        proto.CopyFrom(net)
        proto.name = name or net.name or "subnet"
        if device != HOST and not proto.HasField("device_option"):
            from kaffa.device import device_option

            proto.device_option.CopyFrom(device_option(device.backend, device.index))
        self.proto = proto
        self.name = proto.name
        self.inputs = list(inputs)
        self.outputs = list(outputs)
        self.device = device
        self.policy = policy
        self._lock = threading.Lock()
        self._ws: Any = None
        self._net: Any = None

    def __call__(self, *values: Any) -> tuple[Any, ...]:
        if len(values) != len(self.inputs):
            raise ExecutionError(
                f"sub-net '{self.name}' binds {len(self.inputs)} inputs ({', '.join(self.inputs)}), "
                f"got {len(values)} values"
            )
        out = self.run(dict(zip(self.inputs, values)), self.outputs)
        return tuple(out[n] for n in self.outputs)

    def run(self, bindings: Mapping[str, Any], outputs: Iterable[str] | None = None) -> dict[str, Any]:
        """Bind ``bindings`` (inner name -> value on ``device``), run the net once, and return
        {name: value} for ``outputs`` (default: every blob the net writes). A requested name the
        net does not write but that is bound comes back unchanged; any other missing name raises
        ExecutionError."""
        want = list(writes(self.proto) if outputs is None else outputs)
        if self._lock.acquire(blocking=False):
            try:
                if self._ws is None:
                    from kaffa.workspace import Workspace

                    self._ws = Workspace(f"{self.name}:child")
                return self._run_in(self._ws, bindings, want, cache=True)
            finally:
                if self._ws is not None:  # hold nothing between calls
                    self._ws._blobs.clear()
                    self._ws._devices.clear()
                self._lock.release()
        # Re-entered (a recursive net) or called from two threads at once: a throwaway workspace.
        from kaffa.workspace import Workspace

        return self._run_in(Workspace(f"{self.name}:child"), bindings, want, cache=False)

    def _run_in(self, ws: Any, bindings: Mapping[str, Any], want: list[str], cache: bool) -> dict[str, Any]:
        from kaffa.net import Net

        for name, value in bindings.items():
            ws._blobs[name] = value
            ws._devices[name] = self.device
        net = self._net if cache else None
        if net is None:
            net = Net(self.proto, ws, self.policy)
            if cache:
                self._net = net
        net.run()
        out = {}
        for name in want:
            if name not in ws._blobs:
                raise ExecutionError(
                    f"sub-net '{self.name}' did not produce blob '{name}' "
                    f"(it writes: {', '.join(writes(self.proto)) or 'nothing'})",
                    OpLocation(self.name),
                )
            out[name] = _move(ws._blobs[name], ws._devices.get(name, HOST), self.device)
        return out


def _copy_op(src: str, dst: str) -> OperatorDef:
    return OperatorDef(type="Copy", input=[src], output=[dst], is_gradient_op=True)


def backward_net(
    net: NetDef,
    inputs: Sequence[str],
    g_outputs: Mapping[str, str],
    g_inputs: Mapping[str, str],
    name: str = "",
) -> tuple[NetDef, set[str]]:
    """A net computing gradients through ``net`` (whose free blobs are ``inputs``).

    ``g_outputs``: {blob net writes (or a bound input it passes through): the name its upstream
    gradient is bound under}. ``g_inputs``: {input: the name to write its gradient to}. The result
    recomputes ``net``'s ops (the forward run's intermediates lived in another child workspace),
    then runs the gradient ops ``kaffa.gradients.add_gradient_ops`` makes, then copies each input's
    gradient to its chosen name, or writes zeros of the input's shape (ZerosLike) where ``net``
    gives it none. Returns (the net, the inputs that got a real gradient).
    """
    from kaffa.gradients import add_gradient_ops

    out = NetDef(name=name or (net.name + "_grad" if net.name else "subnet_grad"))
    if net.HasField("device_option"):
        out.device_option.CopyFrom(net.device_option)
    produced = set(writes(net))
    through = {o: g for o, g in g_outputs.items() if o not in produced}  # bound blobs passed out as-is
    losses = {o: g for o, g in g_outputs.items() if o in produced}
    grads: dict[str, str] = {}
    out.op.extend(net.op)
    if losses:
        ops, grads = add_gradient_ops(list(net.op), losses, out.name)
        out.op.extend(ops)
    got: set[str] = set()
    for x in inputs:
        target = g_inputs.get(x)
        if target is None:
            continue
        parts = [p for p in (grads.get(x), through.get(x)) if p is not None]
        if len(parts) == 2:
            out.op.append(OperatorDef(type="Sum", input=parts, output=[target], is_gradient_op=True))
        elif parts and parts[0] != target:
            out.op.append(_copy_op(parts[0], target))
        elif not parts:
            out.op.append(OperatorDef(type="ZerosLike", input=[x], output=[target], is_gradient_op=True))
        if parts:
            got.add(x)
    return out, got


def with_device(net: NetDef, opt: DeviceOption | None) -> NetDef:
    """A copy of ``net`` whose default device is ``opt`` where it names none."""
    out = NetDef()
    out.CopyFrom(net)
    if opt is not None and not out.HasField("device_option"):
        out.device_option.CopyFrom(opt)
    return out
