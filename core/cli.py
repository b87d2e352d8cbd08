"""The ``kaffa`` command: info, ops, conformance, run, convert, draw."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import kaffa
from kaffa.plugins import PLUGIN_API, PluginWarning, registry
from kaffa.schema import SCHEMAS


def cmd_info(args: argparse.Namespace) -> int:
    reg = registry()
    if args.json:
        import json

        from kaffa.introspect import table

        print(json.dumps(table(reg), indent=2))
        return 0
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


def cmd_plugin_new(args: argparse.Namespace) -> int:
    from kaffa.scaffold import new_plugin

    try:
        root = new_plugin(args.name, args.dir, force=args.force)
    except (ValueError, FileExistsError) as e:
        print(f"kaffa plugin new: {e}", file=sys.stderr)
        return 2
    print(f"wrote plugin '{args.name}' to {root}/")
    print(f"next: pip install -e {root} && kaffa conformance --backend {args.name}")
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
        if parts or "/" not in target:  # an engine column that none of the chosen ops has: nothing to say
            print(f"{target}: {parts or 'no cases'}")
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


# -- models: run, convert, draw --------------------------------------------------------------------
class _CliError(Exception):
    """A usage problem with a clear message: printed as ``kaffa CMD: message``, exit status 2."""


def _fetch(spec: str, args: argparse.Namespace) -> Path:
    from kaffa import zoo

    return zoo.fetch(
        spec, base_url=args.base_url, offline=True if args.offline else None, progress=not args.no_progress
    )


def _onnx_inputs(path: Path) -> dict[str, tuple[Any, list[int]]]:
    """{graph input: (numpy dtype, dims with -1 for symbolic ones)} of an ONNX file's real inputs."""
    try:
        import onnx
        from onnx import helper
    except ImportError:
        raise _CliError("reading .onnx files needs the onnx package: pip install 'kaffa[onnx]'") from None
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    out = {}
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
        out[vi.name] = (helper.tensor_dtype_to_np_dtype(t.elem_type), dims)
    return out


def _read_nets(spec: str, args: argparse.Namespace) -> tuple[Any, Any, dict[str, Any]]:
    """(init_net or None, predict_net, value_info) of a model folder, a .onnx file, a zoo name or
    URL, or (for ``draw``) a single NetDef .pb/.pbtxt file."""
    from kaffa import serialize, zoo

    local = Path(spec)
    if local.is_file() and local.suffix.lower() in (".pb", ".pbtxt", ".prototxt"):
        return None, serialize.load_netdef(local), {}
    path = _fetch(spec, args)
    onnx_file = path if path.is_file() else path / zoo.ONNX_FILE
    if path.is_dir() and (path / zoo.PREDICT_NET).is_file() and (path / zoo.INIT_NET).is_file():
        init = serialize.load_netdef(path / zoo.INIT_NET)
        return init, serialize.load_netdef(path / zoo.PREDICT_NET), zoo.read_value_info(path)
    if onnx_file.is_file() and onnx_file.suffix.lower() == ".onnx":
        from kaffa.onnx import import_model

        infos = _onnx_inputs(onnx_file)
        init, predict = import_model(str(onnx_file))
        return init, predict, infos
    raise _CliError(f"{spec}: not a folder with init_net.pb + predict_net.pb, nor a .onnx file")


def _parse_inputs(specs: Sequence[str], names: Sequence[str]) -> dict[str, Any]:
    import numpy as np

    named: dict[str, Any] = {}
    unnamed: list[Any] = []
    for spec in specs:
        key, sep, file = spec.partition("=")
        if not sep or not key or "/" in key or os.sep in key:
            key, file = "", spec
        try:
            value = np.load(file, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise _CliError(f"--input {spec}: cannot read {file}: {e}") from None
        if isinstance(value, np.lib.npyio.NpzFile):  # an .npz holds named inputs
            with value:
                if key:
                    raise _CliError(
                        f"--input {spec}: an .npz file holds its own names; give it without NAME="
                    )
                named.update({k: value[k] for k in value.files})
        elif key:
            named[key] = value
        else:
            unnamed.append(value)
    free = [n for n in names if n not in named]
    if len(unnamed) > len(free):
        raise _CliError(
            f"{len(unnamed)} unnamed --input file(s) for {len(free)} input(s) not given by name: {free}"
        )
    named.update(zip(free, unnamed))
    return named


def _describe(value: Any) -> str:
    import numpy as np

    arr = np.asarray(value)
    flat = arr.reshape(-1)[:6]
    more = " ..." if arr.size > 6 else ""
    vals = np.array2string(flat, precision=5, separator=", ", max_line_width=200)
    return f"{arr.dtype}[{', '.join(str(d) for d in arr.shape)}]  {vals[:-1]}{more}]"


def cmd_run(args: argparse.Namespace) -> int:
    import numpy as np

    from kaffa import zoo

    path = _fetch(args.model, args)
    predictor = zoo.load(path, device=args.backend)
    feeds = _parse_inputs(args.input or [], predictor.input_names)
    missing = [n for n in predictor.input_names if n not in feeds]
    if missing:
        hints = []
        for n in missing:
            info = predictor.value_info.get(n)
            hints.append(
                n if info is None else f"{n} ({np.dtype(info[0]).name}[{','.join(map(str, info[1]))}])"
            )
        raise _CliError(f"no --input for {', '.join(hints)}; give --input FILE.npy or --input NAME=FILE.npy")
    outputs = predictor.run(feeds)
    for name, value in zip(predictor.output_names, outputs):
        print(f"{name}: {_describe(value)}")
    if args.output:
        out = Path(args.output)
        out.parent.mkdir(parents=True, exist_ok=True)
        if len(outputs) == 1:
            np.save(out, outputs[0])
            written = out if out.suffix == ".npy" else out.with_name(out.name + ".npy")
        else:
            written = out.with_suffix(".npz")
            np.savez(written, **dict(zip(predictor.output_names, outputs)))
        print(f"wrote {written}")
    return 0


def _shape_overrides(args: argparse.Namespace) -> dict[str, tuple[Any, list[int]]]:
    import numpy as np

    shapes: dict[str, list[int]] = {}
    for spec in args.input_shape or []:
        name, sep, dims = spec.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = [
                -1 if d.strip() in ("?", "N", "-1") or not d.strip().isdigit() else int(d)
                for d in dims.split(",")
                if d.strip()
            ]
        except ValueError:
            raise _CliError(f"--input-shape {spec}: expected NAME=1,3,224,224") from None
    dtypes: dict[str, Any] = {}
    for spec in args.input_dtype or []:
        name, sep, dt = spec.partition("=")
        try:
            dtypes[name] = np.dtype(dt)
        except TypeError:
            raise _CliError(f"--input-dtype {spec}: expected NAME=float32") from None
    return {n: (dtypes.get(n), shapes.get(n)) for n in {*shapes, *dtypes}}


def cmd_convert(args: argparse.Namespace) -> int:
    import numpy as np

    from kaffa import serialize, zoo

    if getattr(args, "weights", None) is not None:  # a Caffe deploy.prototxt and its caffemodel
        from kaffa.caffe import translate_model

        caffe = translate_model(args.model, args.weights, in_place=args.to == "netdef")  # ONNX: SSA
        init, predict = caffe.init_net, caffe.predict_net
        infos = {k: (np.float32, list(v)) for k, v in caffe.input_shapes.items() if v is not None}
    else:
        init, predict, infos = _read_nets(args.model, args)
    if init is None:
        raise _CliError(
            f"{args.model}: convert needs a model folder (init_net.pb + predict_net.pb), a .onnx, "
            "or a Caffe prototxt with --weights W.caffemodel"
        )
    infos = {k: (np.dtype(v[0]), list(v[1])) for k, v in infos.items()}
    for name, (dt, dims) in _shape_overrides(args).items():
        old = infos.get(name, (np.dtype(np.float32), None))
        infos[name] = (dt if dt is not None else old[0], dims if dims is not None else old[1])
    dest = Path(args.dest)
    if args.to == "netdef":
        serialize.save(init, dest / zoo.INIT_NET)
        serialize.save(predict, dest / zoo.PREDICT_NET)
        written = [dest / zoo.INIT_NET, dest / zoo.PREDICT_NET]
        if infos:
            written.append(zoo.write_value_info(dest, {k: (dt, d or []) for k, (dt, d) in infos.items()}))
    else:
        try:
            import onnx

            from kaffa.onnx import export_model
        except ImportError:
            raise _CliError("writing ONNX needs the onnx package: pip install 'kaffa[onnx]'") from None
        made = {o for op in init.op for o in op.output}
        names = [b for b in dict.fromkeys(predict.external_input) if b not in made]
        missing = [n for n in names if infos.get(n, (None, None))[1] is None]
        if missing:
            raise _CliError(
                f"the input shapes of {missing} are unknown (no value_info.json entry): give "
                + " ".join(f"--input-shape {n}=1,3,224,224" for n in missing)
            )
        inputs = {n: (infos[n][0], [None if d < 0 else d for d in infos[n][1]]) for n in names}
        model = export_model(init, predict, inputs=inputs, opset=args.opset)
        dest.parent.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(dest))
        written = [dest]
    for p in written:
        print(f"wrote {p}")
    return 0


def _dot_quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def net_to_dot(
    predict: Any, params: Sequence[str] = (), hide_params: bool = False, rankdir: str = "TB"
) -> str:
    """Graphviz DOT text for a NetDef, as Caffe2's net_drawer draws it: ops as boxes, blobs as
    ellipses (a blob written in place gets a new ellipse per version, so the graph stays a DAG).
    Blobs in ``params`` are grey (left out with ``hide_params``); graph inputs and outputs are
    filled."""
    params_set = set(params)
    lines = [
        f"digraph {_dot_quote(predict.name or 'net')} {{",
        f"  rankdir={rankdir};",
        '  node [fontname="Helvetica", fontsize=10];',
    ]
    current: dict[str, str] = {}
    count = [0]
    outputs = set(predict.external_output)

    def blob_node(name: str) -> str:
        count[0] += 1
        node = f"b{count[0]}"
        if name in params_set:
            style = 'style=filled, fillcolor="#eeeeee", color="#999999", fontcolor="#555555"'
        elif name in outputs:
            style = 'style=filled, fillcolor="#ffe0b0"'
        elif name in predict.external_input:
            style = 'style=filled, fillcolor="#cfe8ff"'
        else:
            style = 'style=""'
        lines.append(f"  {node} [shape=ellipse, label={_dot_quote(name)}, {style}];")
        current[name] = node
        return node

    for i, op in enumerate(predict.op):
        label = op.type + (f"\n{op.name}" if op.name else "")
        lines.append(
            f'  op{i} [shape=box, style="rounded,filled", fillcolor="#d8f0d0", label={_dot_quote(label)}];'
        )
        for b in op.input:
            if not b or (hide_params and b in params_set):
                continue
            src = current.get(b) or blob_node(b)
            lines.append(f"  {src} -> op{i};")
        for b in op.output:
            if b:
                lines.append(f"  op{i} -> {blob_node(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


_DRAW_HELP = (
    "pip install 'kaffa[draw]' (the graphviz Python package) and install Graphviz itself for `dot` "
    "(apt-get install graphviz, or brew install graphviz); or write DOT text with -o net.dot, "
    "which needs neither"
)


def cmd_draw(args: argparse.Namespace) -> int:
    init, predict, _ = _read_nets(args.model, args)
    params = [] if init is None else [o for op in init.op for o in op.output]
    dot = net_to_dot(predict, params, hide_params=args.hide_params, rankdir=args.rankdir)
    out = Path(args.output)
    fmt = out.suffix.lstrip(".").lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("dot", "gv"):
        out.write_text(dot, encoding="utf-8")
    else:
        try:
            import graphviz
        except ImportError:
            raise _CliError(f"writing {out} needs the graphviz Python package: {_DRAW_HELP}") from None
        try:
            data = graphviz.Source(dot).pipe(format=fmt or "svg")
        except graphviz.ExecutableNotFound:
            raise _CliError(f"writing {out} needs Graphviz's `dot` program on PATH: {_DRAW_HELP}") from None
        except (graphviz.CalledProcessError, ValueError) as e:
            raise _CliError(f"graphviz could not write {out}: {e}") from None
        out.write_bytes(data)
    print(f"wrote {out} ({len(predict.op)} ops)")
    return 0


def _guarded(fn: Any) -> Any:
    """Errors a user can fix are one line on stderr and exit status 2, not a traceback."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (_CliError, kaffa.KaffaError, OSError, ValueError) as e:
            print(f"kaffa {args.command}: {e}", file=sys.stderr)
            return 2

    return run


def _model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", help="where zoo names resolve (default: $KAFFA_ZOO_URL, else Caffe2's zoo)")
    p.add_argument("--offline", action="store_true", help="use only the model cache (as KAFFA_OFFLINE=1)")
    p.add_argument("--no-progress", action="store_true", help="no download progress bar")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="kaffa", description="kaffa: Caffe2-style deep learning with pluggable backends"
    )
    p.add_argument("--version", action="version", version=f"kaffa {kaffa.__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="version, backends with their devices, plugins")
    info.add_argument("-v", "--verbose", action="store_true", help="show tracebacks of quarantined plugins")
    info.add_argument(
        "--json", action="store_true", help="the whole plugin / backend / kernel table as JSON, for tools"
    )
    info.set_defaults(func=cmd_info)
    plugin = sub.add_parser("plugin", help="tools for backend plugin authors")
    plugin_sub = plugin.add_subparsers(dest="plugin_command", required=True)
    new = plugin_sub.add_parser("new", help="write a complete, installable backend plugin package")
    new.add_argument("name", help="backend name (a lower-case identifier, e.g. mychip)")
    new.add_argument("dir", nargs="?", help="where to write it (default: ./kaffa-NAME)")
    new.add_argument("--force", action="store_true", help="overwrite existing files")
    new.set_defaults(func=cmd_plugin_new)
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

    model_help = "a folder with init_net.pb + predict_net.pb, a model.onnx file, or a zoo name or URL"
    run = sub.add_parser("run", help="run a model on .npy inputs and print (or save) its outputs")
    run.add_argument("model", help=model_help)
    run.add_argument(
        "--input",
        "-i",
        action="append",
        metavar="[NAME=]FILE",
        help="an input as .npy (NAME= or the next unnamed input), or an .npz of named inputs (repeatable)",
    )
    run.add_argument("--backend", "-b", help="run there (e.g. opencl, cuda:0); ops it lacks fall back to cpu")
    run.add_argument("--output", "-o", help="write the output to this .npy (several outputs: an .npz)")
    _model_options(run)
    run.set_defaults(func=_guarded(cmd_run))

    conv = sub.add_parser(
        "convert", help="ONNX <-> Caffe2 NetDef (init_net.pb, predict_net.pb, value_info.json); Caffe ->"
    )
    conv.add_argument("model", help=model_help + ", or a Caffe deploy.prototxt (with --weights)")
    conv.add_argument(
        "--weights", metavar="W.caffemodel", help="the trained Caffe weights: MODEL is then a Caffe prototxt"
    )
    conv.add_argument("--to", required=True, choices=["netdef", "onnx"], help="the format to write")
    conv.add_argument("dest", help="the folder (--to netdef) or .onnx file (--to onnx) to write")
    conv.add_argument(
        "--input-shape",
        action="append",
        metavar="NAME=D0,D1,...",
        help="an input's shape (N or ? for a symbolic dim); default: value_info.json (repeatable)",
    )
    conv.add_argument("--input-dtype", action="append", metavar="NAME=DTYPE", help="default float32")
    conv.add_argument("--opset", type=int, default=17, help="ONNX opset to write (default 17)")
    _model_options(conv)
    conv.set_defaults(func=_guarded(cmd_convert))

    draw = sub.add_parser("draw", help="draw a model's predict net (ops as boxes, blobs as ellipses)")
    draw.add_argument("model", help=model_help + ", or a NetDef .pb/.pbtxt file")
    draw.add_argument(
        "--output", "-o", required=True, help="net.svg / .png / .pdf (needs graphviz), or net.dot (DOT text)"
    )
    draw.add_argument("--hide-params", action="store_true", help="leave out the parameter blobs")
    draw.add_argument("--rankdir", default="TB", choices=["TB", "LR", "BT", "RL"], help="graph direction")
    _model_options(draw)
    draw.set_defaults(func=_guarded(cmd_draw))
    from kaffa.distributed.launcher import add_launch_parser

    add_launch_parser(sub)  # kaffa launch -n N script.py: see kaffa.distributed.launcher
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
