"""The cuda kernels, one module per op family (the same families as kaffa.ops): CuPy array code
(cuBLAS GEMMs, CuPy's elementwise and reduction kernels) and raw CUDA C in cu/<family>.cu.
Host helpers live in ``common``; the CUDNN engine in kaffa_cuda.cudnn."""

from kaffa_cuda.kernels import activation, math, nn, pool, train

TABLES = [activation.table, math.table, nn.table, pool.table, train.table]
