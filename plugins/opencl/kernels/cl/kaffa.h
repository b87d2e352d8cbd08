/* Prepended to every kaffa .cl file. The host defines, per build:
 *   T   the storage type of the op's type input (half, float, double, int, long, uchar, ...)
 *   A   the arithmetic type for T: float for half, else T itself
 *   KAFFA_HALF when T is half, KAFFA_INT when T is an integer or bool, KAFFA_FP64 when double
 *   is used anywhere
 * plus whatever extra types a kernel asks for (I for indices, U for an output type, ...).
 * Kernels read and write T buffers only through LD/ST, so half works on every device: vload_half
 * and vstore_half are core OpenCL; cl_khr_fp16 is only needed for half arithmetic, which we avoid.
 */
#ifdef KAFFA_FP64
#pragma OPENCL EXTENSION cl_khr_fp64 : enable
#endif

#ifdef KAFFA_HALF
#define LD(p, i) vload_half((i), (p))
#define ST(p, i, v) vstore_half_rte((float)(v), (i), (p))
#else
#define LD(p, i) ((A)((p)[(i)]))
#define ST(p, i, v) ((p)[(i)] = (T)(v))
#endif

/* Broadcasting: g = [ndim, dims..., strides of operand 0..., strides of operand 1..., ...], as
 * kaffa.launch.broadcast_geometry packs it. The offset of flat output index idx in operand k. */
inline long bcast_offset(__global const int *g, int k, long idx) {
    const int nd = g[0];
    __global const int *dims = g + 1;
    __global const int *st = g + 1 + nd * (k + 1);
    long off = 0;
    for (int d = nd - 1; d >= 0; --d) {
        const long q = idx / dims[d];
        off += (idx - q * dims[d]) * st[d];
        idx = q;
    }
    return off;
}

/* Counter-based random numbers (a 32-bit hash of seed and index): reproducible whatever the
 * launch geometry, and independent streams per seed. Not cryptographic. */
inline uint kaffa_hash(uint x) {
    x ^= x >> 16; x *= 0x7feb352dU;
    x ^= x >> 15; x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}
inline float kaffa_uniform01(uint seed, uint stream, uint idx) {
    const uint h = kaffa_hash(kaffa_hash(seed ^ kaffa_hash(stream + 0x9e3779b9U)) ^ idx);
    return ((float)(h >> 8) + 0.5f) * (1.0f / 16777216.0f); /* (0, 1) */
}
