/* Prepended to every kaffa .cu file (by the host, before compiling with NVRTC through CuPy, and by
 * tests/test_cuda.py before `nvcc -ptx`). The host defines, per build (as macros with long names:
 * CUDA's own headers use T as a template parameter):
 *   KAFFA_T  the storage type of the op's dtype (float, __half, double), typedef'd here as T
 *   KAFFA_A  the arithmetic type for T: float for __half, else T itself, typedef'd as A
 *   KAFFA_HALF when T is __half
 * Kernels read and write T only through LD/ST, so __half is computed in float and rounded once. */
#ifdef KAFFA_HALF
#include <cuda_fp16.h>
#define LD(p, i) (__half2float((p)[(i)]))
#define ST(p, i, v) ((p)[(i)] = __float2half_rn((float)(v)))
#else
#define LD(p, i) ((A)((p)[(i)]))
#define ST(p, i, v) ((p)[(i)] = (T)(v))
#endif

typedef KAFFA_T T;
typedef KAFFA_A A;
typedef long long i64;
#define KAFFA_NEG_INF (-__int_as_float(0x7f800000)) /* NVRTC has no math.h INFINITY */

/* A grid-stride loop over n items: any grid size covers any n. */
#define KAFFA_LOOP(i, n) \
    for (i64 i = (i64)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (i64)blockDim.x * gridDim.x)
