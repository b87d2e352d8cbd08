#!/usr/bin/env bash
# The one GPU check of the cuda backend, for a machine with an NVIDIA GPU (nothing here needs the
# network after the install step). Within 8 minutes it:
#   1. installs kaffa with the cuda extra (CuPy, the cuDNN frontend, cuDNN) into .venv
#      (and PyTorch, if pip can get it, for the comparison rows);
#   2. runs the conformance suite on cuda: the default kernels and the CUDNN engine;
#   3. trains LeNet on the digits data set on cuda;
#   4. measures ResNet-50 training throughput (images/s, batch 32, 224x224) and ResNet-18
#      inference latency (ms, batch 1), next to PyTorch on the same GPU when it is installed.
# Every step has its own time limit (410 s in all, with the 50 s PyTorch install; under 8 minutes
# with each step's 10 s kill grace); a step that fails or runs out of time is reported and the
# script goes on, and exits non-zero at the end if any step failed.
#   bash benchmarks/gpu_check.sh [OUT_DIR]   (default reports/gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-reports/gpu}
mkdir -p "$OUT"
START=$(date +%s)
FAILED=()

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, keep going
  local name=$1 limit=$2
  shift 2
  local t0=$(date +%s)
  echo "== $name (limit ${limit}s)"
  if timeout --kill-after=10 "$limit" "$@" >"$OUT/$name.log" 2>&1; then
    echo "   ok in $(($(date +%s) - t0))s"
  else
    local rc=$?
    echo "   FAILED (exit $rc$([ $rc = 124 ] && echo ', out of time')) in $(($(date +%s) - t0))s; tail of $OUT/$name.log:"
    tail -n 15 "$OUT/$name.log" | sed 's/^/   | /'
    FAILED+=("$name")
  fi
  tail -n 5 "$OUT/$name.log" | sed 's/^/   > /'
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "nvidia-smi: not found"

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
step install 100 .venv/bin/python -m pip install -q -e ".[cuda,test]"
# PyTorch is optional: without it the comparison rows are left out (not a failure).
timeout 50 .venv/bin/python -m pip install -q torch torchvision >"$OUT/install_torch.log" 2>&1 \
  || echo "== PyTorch not installed (see $OUT/install_torch.log): no comparison rows"
. .venv/bin/activate

step info 15 kaffa info
step conformance 110 kaffa conformance --backend cuda --report "$OUT/conformance"
step digits 45 python examples/train_digits.py --seed 0 --epochs 4 --backend cuda --no-progress --out "$OUT/digits"
step benchmark 90 python - "$OUT" <<'PYEOF'
"""ResNet-50 training throughput and ResNet-18 inference latency on cuda:0, kaffa and PyTorch."""
import json
import sys
import time
import warnings

import numpy as np

import kaffa
from kaffa import ModelHelper, Workspace, models, optimizer
from kaffa.device import device_option
from kaffa.scope import DeviceScope

out = sys.argv[1]
rows = {}
warnings.simplefilter("ignore", kaffa.FallbackWarning)
rng = np.random.default_rng(0)


def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps


def kaffa_train(batch=32, reps=5):
    kaffa.set_random_seed(0)
    model = ModelHelper("r50_train")
    with DeviceScope(device_option("cuda")):
        _, loss = models.resnet50(model, "data", 1000, label="label")
        model.add_gradient_ops([loss])
        optimizer.build_sgd(model, base_learning_rate=0.01, momentum=0.9)
    ws = Workspace()
    ws.run_net_once(model.param_init_net)
    ws.feed_blob("data", rng.normal(size=(batch, 3, 224, 224)).astype(np.float32), device="cuda")
    ws.feed_blob("label", rng.integers(0, 1000, batch).astype(np.int32), device="cuda")
    ws.create_net(model.net)
    print(ws.placement_report(model.net.name))  # which ops ran on cuda, which fell back to cpu
    return batch / timed(lambda: ws.run_net(model.net.name), 2, reps)


def kaffa_infer(reps=30):
    kaffa.set_random_seed(0)
    model = ModelHelper("r18_infer")
    with DeviceScope(device_option("cuda")):
        models.resnet18(model, "data", 1000, is_test=True)
    ws = Workspace()
    ws.run_net_once(model.param_init_net)
    ws.feed_blob("data", rng.normal(size=(1, 3, 224, 224)).astype(np.float32), device="cuda")
    ws.create_net(model.net)
    return 1000 * timed(lambda: ws.run_net(model.net.name), 5, reps)


def torch_rows():
    try:
        import torch
        import torchvision  # noqa: F401
    except Exception as e:
        print(f"PyTorch comparison skipped: {type(e).__name__}: {e}")
        return
    from torchvision.models import resnet18, resnet50

    dev = torch.device("cuda")
    net = resnet50().to(dev).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(32, 3, 224, 224, device=dev), torch.randint(0, 1000, (32,), device=dev)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
        torch.cuda.synchronize()

    rows["torch_resnet50_train_img_s"] = 32 / timed(step, 3, 10)
    net18 = resnet18().to(dev).eval()
    x1 = torch.randn(1, 3, 224, 224, device=dev)

    def infer():
        with torch.no_grad():
            net18(x1)
        torch.cuda.synchronize()

    rows["torch_resnet18_infer_ms"] = 1000 * timed(infer, 5, 50)


for name, fn in (("kaffa_resnet50_train_img_s", kaffa_train), ("kaffa_resnet18_infer_ms", kaffa_infer)):
    try:
        rows[name] = fn()
    except Exception as e:
        print(f"{name}: {type(e).__name__}: {e}")
torch_rows()
for k, v in rows.items():
    print(f"{k:32s} {v:10.2f}")
json.dump(rows, open(f"{out}/benchmark.json", "w"), indent=1)
sys.exit(0 if {"kaffa_resnet50_train_img_s", "kaffa_resnet18_infer_ms"} <= rows.keys() else 1)
PYEOF

echo "== done in $(($(date +%s) - START))s; reports in $OUT"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "failed steps: ${FAILED[*]}"
  exit 1
fi
