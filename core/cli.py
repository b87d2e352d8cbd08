"""The ``kaffa`` command: info, ops, conformance."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import warnings
from collections.abc import Sequence

import kaffa
from kaffa.plugins import PLUGIN_API, PluginWarning, registry
from kaffa.schema import SCHEMAS


def cmd_info(args: argparse.Namespace) -> int:
    reg = registry()
    print(f"kaffa {kaffa.__version__} (plugin API {PLUGIN_API}), Python {sys.version.split()[0]}")
    print("\nbackends:")
    for name, backend in reg.backends.items():
        try:
            reason = backend.unavailable_reason()
            devices = backend.devices() if reason is None else []
        except Exception as e:  # a backend's discovery must never take `kaffa info` down
            reason, devices = f"discovery raised {type(e).__name__}: {e}", []
        version = f" {backend.version}" if backend.version else ""
        n_ops = len(reg.kernels.ops(name))
        state = f"available, {n_ops} op kernels" if reason is None else f"unavailable: {reason}"
        print(f"  {name}{version} (device type {backend.device_type}): {state}")
        for d in devices:
            print(f"    {d.describe()}")
    print("\nplugins:")
    for info in reg.plugins.values():
        if info.quarantined:
            print(f"  {info.name}: QUARANTINED ({info.source}): {info.error}")
            if args.verbose and info.traceback:
                print(textwrap.indent(info.traceback.rstrip(), "      "))
        else:
            extra = f"; {'; '.join(info.notes)}" if info.notes else ""
            print(
                f"  {info.name}: loaded from {info.source}, backends: {', '.join(info.backends) or '-'}"
                + extra
            )
    return 0


def cmd_ops(args: argparse.Namespace) -> int:
    reg = registry()
    names = args.op or list(SCHEMAS)
    for name in names:
        schema = SCHEMAS.get(name)
        backends = reg.kernels.backends_for(name)
        impl = []
        for b in backends:
            engines = sorted(reg.kernels.engines(b, name))
            impl.append(b + (f" ({', '.join(e or 'default' for e in engines)})" if engines != [""] else ""))
        if args.verbose or args.op:
            print(f"{name}  [{schema.family}]  on: {', '.join(impl) or 'no backend'}")
            print(textwrap.indent(textwrap.fill(schema.doc, 96), "    "))
            for spec in schema.args.values():
                default = "" if spec.default is None else f" = {spec.default!r}"
                print(
                    f"    - {spec.name}: {spec.type.value}{default}" + (f"  ({spec.doc})" if spec.doc else "")
                )
            print()
        else:
            doc = schema.doc.split(". ")[0].rstrip(".")
            print(f"{name:<24} {', '.join(impl) or '-':<28} {doc[:70]}")
    return 0


def _progress(total_hint: str):
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is in the `test` extra; without it, print one line per target
        last = [""]

        def plain(done: int, total: int, label: str) -> None:
            target = label.split()[0]
            if target != last[0]:
                last[0] = target
                print(f"  running {target} ({total} cases in all)...", file=sys.stderr)

        return plain, lambda: None
    bar = tqdm(total=None, desc=total_hint, unit="case", file=sys.stderr, disable=not sys.stderr.isatty())

    def update(done: int, total: int, label: str) -> None:
        if bar.total is None:
            bar.total = total
        bar.set_postfix_str(label, refresh=False)
        bar.update(1)

    return update, bar.close


def cmd_conformance(args: argparse.Namespace) -> int:
    from kaffa_conformance import report, runner

    reg = registry()
    if args.backend:
        targets: list[runner.Target] = []
        for spec in args.backend:
            t = runner.Target.parse(spec)
            targets += [t] if t.engine or not args.all_engines else runner.targets_for(t.backend, t.device)
    else:  # every available backend (the mock is only for tests)
        targets = []
        for name, backend in reg.backends.items():
            if name == "mock":
                continue
            reason = backend.unavailable_reason()
            if reason is None:
                targets += runner.targets_for(name)
            else:
                print(f"skipping {name}: unavailable: {reason}", file=sys.stderr)
    update, close = _progress("conformance")
    try:
        result = runner.run(targets, args.op or None, strict=args.strict, progress=update)
    except (kaffa.KaffaError, KeyError) as e:
        close()
        print(f"kaffa conformance: {e}", file=sys.stderr)
        return 2
    close()
    for target, counts in result.summary().items():
        parts = ", ".join(f"{n} {o}" for o, n in counts.items() if n)
        print(f"{target}: {parts}")
    for cell in result.failures():
        worst = cell.worst()
        print(
            f"  {cell.outcome.upper()}: {cell.target} {cell.op} {cell.dtype} case {worst.case}: "
            + worst.message
        )
    if args.report:
        for path in report.write(result, args.report):
            print(f"wrote {path}")
    print("conformance: OK" if result.ok else "conformance: FAILED")
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kaffa", description="kaffa: Caffe2-style deep learning with pluggable backends"
    )
    p.add_argument("--version", action="version", version=f"kaffa {kaffa.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="version, backends with their devices, plugins")
    info.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of quarantined plugins")
    info.set_defaults(func=cmd_info)
    ops = sub.add_parser("ops", help="every operator, its doc, and which backends implement it")
    ops.add_argument("op", nargs="*", help="only these ops (full docs and arguments)")
    ops.add_argument("-v", "--verbose", action="store_true", help="full docs and arguments for every op")
    ops.set_defaults(func=cmd_ops)
    conf = sub.add_parser("conformance", help="check backends op by op against the float64 reference")
    conf.add_argument(
        "--backend",
        action="append",
        help="backend[:device][/ENGINE] to check (repeatable; default: every available backend)",
    )
    conf.add_argument("--op", action="append", help="only this op (repeatable)")
    conf.add_argument("--report", metavar="DIR", help="write conformance.{json,md,html} to DIR")
    mode = conf.add_mutually_exclusive_group()
    mode.add_argument(
        "--strict",
        dest="strict",
        action="store_true",
        default=True,
        help="no cpu fallback: ops a backend lacks are 'unsupported' (default)",
    )
    mode.add_argument(
        "--fallback",
        dest="strict",
        action="store_false",
        help="let ops a backend lacks run on cpu; such cells show as 'fallback'",
    )
    conf.add_argument(
        "--no-engines",
        dest="all_engines",
        action="store_false",
        help="with --backend NAME, check only the default kernels, not every engine",
    )
    conf.set_defaults(func=cmd_conformance)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("XDG_RUNTIME_DIR", _private_runtime_dir())
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PluginWarning)  # `kaffa info` reports quarantined plugins itself
        registry()
    return int(args.func(args))


def _private_runtime_dir() -> str:
    """Vulkan's loader complains without XDG_RUNTIME_DIR; give it a private one."""
    import tempfile

    path = os.path.join(tempfile.gettempdir(), f"kaffa-runtime-{os.getuid() if hasattr(os, 'getuid') else 0}")
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
