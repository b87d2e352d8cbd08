"""Import an ONNX model into kaffa and compare its outputs with onnxruntime on a random input.

    python examples/onnx_compare.py ../shared/models/resnet18.onnx --backend cpu

Prints, per output, the relative error max|kaffa - ort| / max|ort|, and exits non-zero when it
exceeds --tol (default 1e-4). Dims without a fixed size take --batch (batch) or 1.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("model", help="path to an .onnx file")
    p.add_argument("--backend", default="cpu", help="kaffa device to run on (default cpu)")
    p.add_argument("--batch", type=int, default=1, help="size for symbolic dims (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tol", type=float, default=1e-4, help="largest relative error accepted")
    args = p.parse_args(argv)

    import onnx
    import onnxruntime as ort

    import kaffa
    from kaffa.onnx import import_model

    t0 = time.perf_counter()
    model = onnx.load(args.model)
    init_net, predict_net = import_model(model)
    t_import = time.perf_counter() - t0
    print(
        f"imported {args.model}: {len(init_net.op)} constants, {len(predict_net.op)} ops in {t_import:.1f}s"
    )

    rng = np.random.default_rng(args.seed)
    initializers = {i.name for i in model.graph.initializer}
    feeds = {}
    for vi in model.graph.input:
        if vi.name in initializers:
            continue
        t = vi.type.tensor_type
        shape = [d.dim_value if d.HasField("dim_value") else args.batch for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        feeds[vi.name] = rng.standard_normal(shape).astype(dtype)

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = sess.run(None, feeds)

    predictor = kaffa.Predictor(init_net, predict_net, device=None if args.backend == "cpu" else args.backend)
    t0 = time.perf_counter()
    got = predictor.run(feeds)
    t_run = time.perf_counter() - t0
    print(f"kaffa ({args.backend}) ran in {t_run * 1000:.0f} ms (first run, includes planning)")

    worst = 0.0
    for out, r, g in zip(sess.get_outputs(), ref, got):
        if r.shape != g.shape:
            print(f"{out.name}: shape {g.shape} differs from onnxruntime's {r.shape}")
            return 1
        scale = float(np.max(np.abs(r))) or 1.0
        rel = float(np.max(np.abs(g.astype(np.float64) - r.astype(np.float64)))) / scale
        worst = max(worst, rel)
        print(
            f"{out.name} {list(r.shape)}: relative error {rel:.3e} "
            f"(max|diff| / max|ort|, max|ort| {scale:.3g})"
        )
    ok = worst <= args.tol
    print(("OK" if ok else "FAIL") + f": worst relative error {worst:.3e} vs tolerance {args.tol:g}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
