"""Compiled nets: the planner that turns a NetDef into bound kernels, and the executor loop.

Creating a net checks every op against its schema, infers shapes and dtypes, picks a kernel
per op (engine preference, dtype claims, argument predicates), falls back to cpu or fails
(strict policy) where a backend has no kernel, inserts copies where a blob crosses devices, and
binds every kernel once. Running is then a loop of direct calls over slot indices.

A plan is valid for one *signature*: the dtype and device of every blob the net reads from the
workspace. When a run sees a new signature (a blob fed as float64 instead of float32, or on
another device) the net is planned again; shapes may change freely between runs.

Runs are transactional: ops write into the net's private slots, and the workspace is updated
only when every op has succeeded, so a failed run leaves the workspace as it was.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any

import numpy as np

from kaffa import engines, rng
from kaffa.device import HOST, Device
from kaffa.errors import (
    DeviceError,
    ExecutionError,
    KaffaError,
    MissingBlobError,
    OperatorError,
    OpLocation,
    PluginError,
    SchemaError,
    ShapeError,
    Unsupported,
    UnsupportedOperatorError,
)
from kaffa.kernels import KernelContext, KernelDef
from kaffa.plugins import Registry, registry
from kaffa.proto import DeviceOption, NetDef, OperatorDef
from kaffa.schema import SCHEMAS, TensorInfo

if TYPE_CHECKING:
    from kaffa.workspace import Workspace

FALLBACK = "fallback"
STRICT = "strict"
EXECUTORS = ("", "simple", "dag", "async_dag", "async_scheduling", "async_simple", "prof_dag", "rnn")


class FallbackWarning(UserWarning):
    """Some ops of a net run on cpu because their backend lacks a kernel (see the placement report)."""


@dataclass(frozen=True)
class Placement:
    """Where one op runs: the device asked for, the device used, the engine, and why they differ."""

    index: int
    op_type: str
    requested: str
    ran_on: str
    engine: str = ""
    reason: str = ""

    @property
    def fell_back(self) -> bool:
        return self.requested != self.ran_on


@dataclass(frozen=True)
class CopyRecord:
    blob: str
    src: str
    dst: str
    before_op: int


@dataclass
class PlacementReport:
    net: str
    placements: list[Placement] = field(default_factory=list)
    copies: list[CopyRecord] = field(default_factory=list)

    @property
    def fallbacks(self) -> list[Placement]:
        return [p for p in self.placements if p.fell_back]

    def to_dict(self) -> dict[str, Any]:
        return {
            "net": self.net,
            "placements": [p.__dict__ for p in self.placements],
            "copies": [c.__dict__ for c in self.copies],
        }

    def __str__(self) -> str:
        lines = [
            f"placement of net '{self.net}': {len(self.placements)} ops, "
            f"{len(self.fallbacks)} fell back, {len(self.copies)} copies"
        ]
        for p in self.placements:
            eng = f" [{p.engine}]" if p.engine else ""
            note = f"  <- fell back from {p.requested}: {p.reason}" if p.fell_back else ""
            lines.append(f"  #{p.index:<3} {p.op_type:<16} {p.ran_on}{eng}{note}")
        for c in self.copies:
            lines.append(f"  copy '{c.blob}' {c.src} -> {c.dst} before op #{c.before_op}")
        return "\n".join(lines)


@dataclass(frozen=True)
class _StepMeta:
    index: int  # op index in the NetDef (-1 for an inserted copy)
    op_type: str
    op_name: str
    inputs: tuple[str, ...]
    device: Device


@dataclass
class _Plan:
    signature: tuple[Any, ...]
    steps: list[tuple[Any, tuple[int, ...], tuple[int, ...], _StepMeta]]
    nslots: int
    reads: list[tuple[str, int]]  # workspace blobs loaded into slots at the start of a run
    writes: list[tuple[str, int, Device]]  # slots committed to the workspace after a run
    report: PlacementReport
    sync: list[tuple[Any, int]]  # (backend, device index) to synchronize at the end of a run
    _deps: list[list[int]] | None = None
    fast: list[tuple[Any, Any, int, tuple[int, ...], Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # The simple executor's loop, precomputed: (kernel, slot getter, the single output slot or
        # -1, all output slots, the step for error reports). An itemgetter of 2+ slots returns a
        # tuple; of a slice, a list; either unpacks straight into the kernel's arguments.
        for step in self.steps:
            fn, ins, outs, _ = step
            get = (
                itemgetter(*ins)
                if len(ins) > 1
                else itemgetter(slice(ins[0], ins[0] + 1) if ins else slice(0, 0))
            )
            self.fast.append((fn, get, outs[0] if len(outs) == 1 else -1, outs, step))

    def successors(self) -> list[list[int]]:
        """For the dag executor: step i -> the steps that must wait for it. A step waits for the
        last writer of each slot it reads (read after write), and for every reader and the last
        writer of each slot it writes (write after read / write after write: in-place ops)."""
        if self._deps is None:
            succ: list[set[int]] = [set() for _ in self.steps]
            last_write: dict[int, int] = {}
            readers: dict[int, list[int]] = {}
            for j, (_, ins, outs, _) in enumerate(self.steps):
                for s in ins:
                    if s in last_write:
                        succ[last_write[s]].add(j)
                for s in outs:
                    for r in readers.get(s, ()):
                        if r != j:
                            succ[r].add(j)
                    if s in last_write:
                        succ[last_write[s]].add(j)
                for s in ins:
                    readers.setdefault(s, []).append(j)
                for s in outs:
                    last_write[s] = j
                    readers[s] = []
            self._deps = [sorted(x) for x in succ]
        return self._deps


def _fmt_info(name: str, info: TensorInfo) -> tuple[str, str]:
    return (name, str(info))


def _location(net: str, index: int, op: OperatorDef, infos: Sequence[TensorInfo] = ()) -> OpLocation:
    return OpLocation(net, index, op.type, op.name, tuple(_fmt_info(n, i) for n, i in zip(op.input, infos)))


def _select(reg: Registry, backend: str, op: OperatorDef, ctx: KernelContext) -> tuple[KernelDef | None, str]:
    """Caffe2's engine walk: the op's engines, per-op and global preferences, then the default.
    Returns (kernel, "") or (None, the reasons every candidate was rejected)."""
    candidates = reg.kernels.engines(backend, op.type)
    if not candidates:
        return None, f"backend '{backend}' has no {op.type} kernel"
    reasons = []
    for engine in engines.engine_order(backend, op.type, op.engine):
        kdef = candidates.get(engine)
        if kdef is None:
            continue
        ctx.engine = engine
        why = kdef.rejection(ctx)
        if why is None:
            return kdef, ""
        reasons.append(f"{engine or 'default'} engine: {why}")
    if not reasons:
        asked = op.engine or "default"
        return None, f"backend '{backend}' has no {op.type} kernel for engine {asked}"
    return None, "; ".join(reasons)


def _device_of(op: OperatorDef, net_default: DeviceOption | None) -> DeviceOption | None:
    if op.HasField("device_option"):
        return op.device_option
    return net_default


def _resolve_device(reg: Registry, opt: DeviceOption | None) -> tuple[Any, Device]:
    if opt is None:
        return reg.backend("cpu"), HOST
    backend = reg.backend_for_type(opt.device_type)
    reason = backend.unavailable_reason()
    if reason is not None:
        raise DeviceError(f"backend '{backend.name}' is unavailable: {reason}")
    n = len(backend.devices())
    if not 0 <= opt.device_id < n:
        raise DeviceError(
            f"backend '{backend.name}' has {n} device(s); device_id {opt.device_id} does not exist"
        )
    return backend, Device(backend.name, opt.device_id)


def compile_plan(
    netdef: NetDef,
    known: Mapping[str, tuple[TensorInfo, Device]],
    policy: str,
    signature: tuple[Any, ...] = (),
) -> _Plan:
    """Plan ``netdef`` given what the workspace holds now (``known``: name -> (info, device))."""
    reg = registry()
    net = netdef.name
    net_default = netdef.device_option if netdef.HasField("device_option") else None
    if netdef.type not in EXECUTORS:
        raise SchemaError(
            f"net '{net}' asks for executor type '{netdef.type}'; kaffa has: "
            f"{', '.join(e for e in EXECUTORS if e)}"
        )
    declared = set(netdef.external_input)
    info: dict[str, TensorInfo] = {}
    where: dict[str, Device | None] = {}
    for name, (ti, dev) in known.items():
        info[name], where[name] = ti, dev
    slots: dict[str, int] = {}
    nslots = 0
    reads: dict[str, int] = {}
    produced: set[str] = set()
    copies: dict[tuple[str, Device], int] = {}
    steps: list[tuple[Any, tuple[int, ...], tuple[int, ...], _StepMeta]] = []
    report = PlacementReport(net)
    unsupported: list[Unsupported] = []
    used_devices: dict[Device, Any] = {}

    def new_slot() -> int:
        nonlocal nslots
        nslots += 1
        return nslots - 1

    def slot(name: str) -> int:
        if name not in slots:
            slots[name] = new_slot()
        return slots[name]

    def record_outputs(op: OperatorDef, out_infos: list[TensorInfo], device: Device) -> None:
        for name, oi in zip(op.output, out_infos):
            info[name], where[name] = oi, device
            produced.add(name)
            for key in [k for k in copies if k[0] == name]:
                del copies[key]  # stale: the blob was rewritten

    for idx, op in enumerate(netdef.op):
        loc = _location(net, idx, op)
        try:
            schema = SCHEMAS.get(op.type)
            schema.check_arity(op)
            args = schema.parse_args(op.arg)
            schema.check_inplace(op)
        except OperatorError as e:
            raise e.at(loc) from None
        for name in op.input:
            if name not in info:
                if name in declared:  # an external input not fed yet: planned again at the first run
                    info[name], where[name] = TensorInfo(), None
                else:
                    raise MissingBlobError(
                        f"input '{name}' does not exist in the workspace and no earlier op produces it", loc
                    )
            if name not in produced and name not in reads:
                reads[name] = slot(name)
        in_infos = [info[n] for n in op.input]
        loc = _location(net, idx, op, in_infos)
        try:
            out_infos = schema.infer_outputs(args, in_infos, len(op.output))
        except OperatorError as e:
            raise e.at(loc) from None
        try:
            backend, device = _resolve_device(reg, _device_of(op, net_default))
        except DeviceError as e:
            raise DeviceError(f"{e} (in {loc.describe()})") from None
        if schema.type_input is not None and in_infos:
            dtype = in_infos[min(schema.type_input, len(in_infos) - 1)].dtype
        else:
            dtype = out_infos[0].dtype if out_infos else None
        opt = _device_of(op, net_default)
        seed = opt.random_seed if opt is not None and opt.HasField("random_seed") else rng.next_seed()
        ctx = KernelContext(op, op.type, args, in_infos, out_infos, device, backend, op.engine, seed, dtype)
        kdef, why = _select(reg, backend.name, op, ctx)
        if kdef is None and policy == FALLBACK and backend.name != "cpu":
            ctx.device, ctx.backend, ctx.engine = HOST, reg.backend("cpu"), ""
            kdef, cpu_why = _select(reg, "cpu", op, ctx)
            if kdef is None:
                why = f"{why}; no cpu fallback either: {cpu_why}"
        if kdef is None:
            unsupported.append(Unsupported(idx, op.type, str(device), why))
            record_outputs(op, out_infos, device)  # keep checking the ops after it
            continue
        report.placements.append(Placement(idx, op.type, str(device), str(ctx.device), kdef.engine, why))
        try:
            run = kdef.build(ctx)
        except OperatorError as e:
            raise e.at(loc) from None
        except KaffaError:
            raise
        except Exception as e:
            raise PluginError(
                f"the {kdef.backend} kernel for {op.type} (engine '{kdef.engine}', plugin "
                f"'{kdef.plugin}') failed to build: {type(e).__name__}: {e} "
                f"(in {loc.describe()})"
            ) from e
        run_dev = ctx.device
        used_devices.setdefault(run_dev, ctx.backend)
        in_slots = []
        for name in op.input:
            src = where[name]
            if src is None or src == run_dev:
                in_slots.append(slot(name))
                continue
            key = (name, run_dev)
            if key not in copies:
                copies[key] = new_slot()
                steps.append(
                    (
                        _copy_fn(reg, src, run_dev),
                        (slot(name),),
                        (copies[key],),
                        _StepMeta(-1, "Copy", f"{src}->{run_dev}", (name,), run_dev),
                    )
                )
                report.copies.append(CopyRecord(name, str(src), str(run_dev), idx))
            in_slots.append(copies[key])
        out_slots = tuple(slot(name) for name in op.output)
        record_outputs(op, out_infos, run_dev)
        steps.append(
            (run, tuple(in_slots), out_slots, _StepMeta(idx, op.type, op.name, tuple(op.input), run_dev))
        )

    if unsupported:
        raise UnsupportedOperatorError(net, unsupported, strict=policy == STRICT)
    for name in netdef.external_output:
        if name not in produced and name not in info:
            raise MissingBlobError(
                f"external output '{name}' is neither produced by an op nor in the workspace", OpLocation(net)
            )
    if report.fallbacks:
        warnings.warn(
            f"{len(report.fallbacks)} op(s) of net '{net}' fell back to cpu: "
            + ", ".join(f"#{p.index} {p.op_type}" for p in report.fallbacks[:8])
            + ("…" if len(report.fallbacks) > 8 else "")
            + " (see the placement report)",
            FallbackWarning,
            stacklevel=4,
        )
    writes = [(name, slots[name], where[name]) for name in produced]  # type: ignore[misc]
    sync = [(b, d.index) for d, b in used_devices.items() if d != HOST]
    return _Plan(signature, steps, nslots, sorted(reads.items()), writes, report, sync)


class _StepFailed(Exception):
    def __init__(self, step: Any, error: Exception):
        super().__init__(str(error))
        self.step, self.error = step, error


_POOLS: dict[int, futures.ThreadPoolExecutor] = {}


def _pool(workers: int) -> futures.ThreadPoolExecutor:
    """One shared pool per worker count: dag nets reuse threads across runs."""
    if workers not in _POOLS:
        _POOLS[workers] = futures.ThreadPoolExecutor(workers, thread_name_prefix="kaffa-dag")
    return _POOLS[workers]


def _copy_fn(reg: Registry, src: Device, dst: Device) -> Any:
    sb, db = reg.backend(src.backend), reg.backend(dst.backend)
    if src.backend == dst.backend:
        return lambda x: (sb.copy_between(x, src.index, dst.index),)
    if dst.backend == "cpu":
        return lambda x: (sb.to_host(x, src.index),)
    if src.backend == "cpu":
        return lambda x: (db.from_host(np.asarray(x, order="C"), dst.index),)
    return lambda x: (db.from_host(sb.to_host(x, src.index), dst.index),)


@dataclass(frozen=True)
class OpTime:
    """One op's mean time per run in a ``Net.benchmark`` (index -1: a copy the planner inserted)."""

    index: int
    op_type: str
    name: str
    ran_on: str
    ms: float
    input_shapes: tuple[tuple[int, ...] | None, ...] = ()


@dataclass(frozen=True)
class NetBenchmark:
    """What ``Net.benchmark`` measured: the whole net's mean time per run and, with ``per_op``,
    each op's (Caffe2's ``workspace.BenchmarkNet``; ``as_caffe2()`` gives its list)."""

    net: str
    iters: int
    total_ms: float
    ops: tuple[OpTime, ...] = ()

    def as_caffe2(self) -> list[float]:
        """[ms per run, then ms per op in net order], as Caffe2's BenchmarkNet returns."""
        return [self.total_ms, *(o.ms for o in self.ops)]

    def by_type(self) -> list[tuple[str, int, float]]:
        """(op type, count, ms per run) summed over the ops of each type, slowest first."""
        acc: dict[str, list[float]] = {}
        for o in self.ops:
            entry = acc.setdefault(o.op_type, [0, 0.0])
            entry[0] += 1
            entry[1] += o.ms
        return sorted(((t, int(n), ms) for t, (n, ms) in acc.items()), key=lambda r: -r[2])

    def __str__(self) -> str:
        lines = [f"net '{self.net}': {self.total_ms:.3f} ms per run (mean of {self.iters})"]
        if self.ops:
            timed = sum(o.ms for o in self.ops)
            lines.append(f"  per op type (sum {timed:.3f} ms; the rest is the executor loop):")
            for t, n, ms in self.by_type():
                lines.append(f"    {t:<24} x{n:<4} {ms:9.3f} ms  {100 * ms / max(timed, 1e-12):5.1f}%")
            lines.append("  slowest ops:")
            for o in sorted(self.ops, key=lambda o: -o.ms)[:10]:
                label = f"#{o.index} {o.op_type}" + (f" '{o.name}'" if o.name else "")
                shapes = ", ".join("?" if s is None else "x".join(map(str, s)) for s in o.input_shapes)
                lines.append(f"    {label:<32} {o.ran_on:<8} {o.ms:9.3f} ms  [{shapes}]")
        return "\n".join(lines)


class Net:
    """A net created in a workspace: planned, bound, ready to run many times."""

    _sequential = False  # set by benchmark(per_op=True): time ops one by one

    def __init__(self, netdef: NetDef, workspace: Workspace, policy: str = FALLBACK):
        if policy not in (FALLBACK, STRICT):
            raise ValueError(f"policy must be '{FALLBACK}' or '{STRICT}', got {policy!r}")
        self.proto = netdef
        self.name = netdef.name
        self.policy = policy
        self._ws = workspace
        self._plans: dict[tuple[Any, ...], _Plan] = {}
        self._plan = self._make_plan(self._signature_now(creating=True))

    @property
    def placement_report(self) -> PlacementReport:
        return self._plan.report

    def _signature_now(self, creating: bool = False) -> tuple[Any, ...]:
        blobs, devices = self._ws._blobs, self._ws._devices
        sig = []
        for name in self._inputs():
            if name in blobs:
                v = blobs[name]
                sig.append((name, devices.get(name), getattr(v, "dtype", type(v))))
            elif not creating:
                raise MissingBlobError(
                    f"net '{self.name}' reads blob '{name}', which is not in the workspace",
                    OpLocation(self.name),
                )
        return tuple(sig)

    def _inputs(self) -> list[str]:
        if not hasattr(self, "_input_names"):
            produced: set[str] = set()
            names: list[str] = []
            for op in self.proto.op:
                for n in op.input:
                    if n not in produced and n not in names:
                        names.append(n)
                produced.update(op.output)
            self._input_names = names
        return self._input_names

    def _make_plan(self, signature: tuple[Any, ...]) -> _Plan:
        known = {}
        for name in self._inputs():
            if name in self._ws._blobs:
                known[name] = (TensorInfo.of(self._ws._blobs[name]), self._ws._devices.get(name, HOST))
        plan = compile_plan(self.proto, known, self.policy, signature)
        self._plans[signature] = plan
        return plan

    def run(self) -> None:
        """Run every op once. On failure the workspace is left unchanged and a typed error names the op."""
        ws = self._ws
        blobs = ws._blobs
        plan = self._plan
        sig = self._signature_now()
        if plan.signature != sig:
            plan = self._plan = self._plans.get(sig) or self._make_plan(sig)
        slots: list[Any] = [None] * plan.nslots
        for name, s in plan.reads:
            slots[s] = blobs[name]
        step = None
        try:
            if self._workers > 1 and len(plan.steps) > 1 and not self._sequential:
                self._run_dag(plan, slots)
            else:
                for fn, get, out, outs, step in plan.fast:  # noqa: B007 (step: for the error report)
                    res = fn(*get(slots))
                    if out >= 0:
                        slots[out] = res[0]
                    else:
                        for o, v in zip(outs, res):
                            slots[o] = v
            for backend, index in plan.sync:
                backend.synchronize(index)
        except _StepFailed as e:
            raise self._failure(e.step, slots, e.error) from e.error
        except Exception as e:
            raise self._failure(step, slots, e) from e
        devices = ws._devices
        for name, s, dev in plan.writes:
            v = slots[s]
            if v is None:
                raise ExecutionError(
                    f"no op wrote a value for blob '{name}' (a kernel returned too few outputs)",
                    OpLocation(self.name),
                )
            blobs[name] = v
            devices[name] = dev

    def benchmark(self, warmup: int = 1, iters: int = 10, per_op: bool = False) -> NetBenchmark:
        """Run the net ``warmup`` times, then time ``iters`` runs; with ``per_op``, time every op
        over ``iters`` more runs (sequentially, whatever the executor). The hot loop itself is
        untouched: the per-op timers wrap the bound kernels only while this runs."""
        if iters < 1 or warmup < 0:
            raise ValueError(f"benchmark needs iters >= 1 and warmup >= 0, got {iters} and {warmup}")
        for _ in range(warmup):
            self.run()
        start = time.perf_counter()
        for _ in range(iters):
            self.run()
        total = (time.perf_counter() - start) / iters * 1e3
        if not per_op:
            return NetBenchmark(self.name, iters, total)
        plan = self._plan
        sums = [0.0] * len(plan.fast)
        shapes: list[tuple[tuple[int, ...] | None, ...]] = [()] * len(plan.fast)

        def timed(k: int, fn: Any) -> Any:
            def call(*args: Any) -> Any:
                shapes[k] = tuple(tuple(a.shape) if hasattr(a, "shape") else None for a in args)
                t = time.perf_counter()
                try:
                    return fn(*args)
                finally:
                    sums[k] += time.perf_counter() - t

            return call

        original = plan.fast
        plan.fast = [(timed(k, f[0]), *f[1:]) for k, f in enumerate(original)]
        self._sequential = True
        try:
            for _ in range(iters):
                self.run()
        finally:
            plan.fast = original
            self._sequential = False
        report = self.placement_report
        where = {p.index: p.ran_on for p in report.placements}
        ops = tuple(
            OpTime(
                meta.index,
                meta.op_type,
                meta.op_name,
                where.get(meta.index, str(meta.device)),
                t / iters * 1e3,
                sh,
            )
            for (_, _, _, _, (_, _, _, meta)), t, sh in zip(original, sums, shapes)
        )
        return NetBenchmark(self.name, iters, total, ops)

    @property
    def _workers(self) -> int:
        """Threads for the dag executor (net type dag/async_*), 1 for simple."""
        if self.proto.type in ("", "simple"):
            return 1
        return self.proto.num_workers if self.proto.num_workers > 0 else min(8, os.cpu_count() or 1)

    def _run_dag(self, plan: _Plan, slots: list[Any]) -> None:
        """Run steps as their inputs become ready, independent branches in parallel on a pool.
        numpy (and device queues) release the GIL in their kernels, so branches really overlap."""
        succ = plan.successors()
        waiting = [0] * len(plan.steps)
        for nexts in succ:
            for j in nexts:
                waiting[j] += 1

        def call(j: int) -> int:
            fn, ins, outs, _ = plan.steps[j]
            try:
                res = fn(*[slots[i] for i in ins])
            except Exception as e:
                raise _StepFailed(plan.steps[j], e) from e
            for o, v in zip(outs, res):
                slots[o] = v
            return j

        pool = _pool(self._workers)
        running = {pool.submit(call, j) for j, w in enumerate(waiting) if w == 0}
        try:
            while running:
                done, running = futures.wait(running, return_when=futures.FIRST_COMPLETED)
                for f in done:
                    for j in succ[f.result()]:  # re-raises a step's failure
                        waiting[j] -= 1
                        if waiting[j] == 0:
                            running.add(pool.submit(call, j))
        finally:
            futures.wait(running)  # never leave a step writing into slots after we return

    def _failure(self, step: Any, slots: list[Any], error: Exception) -> Exception:
        if step is None:
            return ExecutionError(f"{type(error).__name__}: {error}", OpLocation(self.name))
        _, ins, _, meta = step
        infos = [TensorInfo.of(slots[i]) for i in ins]
        loc = OpLocation(
            self.name,
            meta.index if meta.index >= 0 else None,
            meta.op_type,
            meta.op_name,
            tuple(_fmt_info(n, i) for n, i in zip(meta.inputs, infos)),
        )
        if isinstance(error, OperatorError):
            return error.at(loc)
        if meta.index >= 0:
            # Explain shape errors with the schema's own rule where the inputs changed since planning.
            op = self.proto.op[meta.index]
            schema = SCHEMAS.get(op.type)
            try:
                schema.infer_outputs(schema.parse_args(op.arg), infos, len(op.output))
            except ShapeError as se:
                return se.at(loc)
            except Exception:
                pass
        return ExecutionError(f"{meta.device} kernel raised {type(error).__name__}: {error}", loc)
