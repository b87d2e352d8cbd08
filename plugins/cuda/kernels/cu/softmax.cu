/* Softmax over rows of d contiguous items: one block per row, a shared-memory tree for the max and
 * the sum (blockDim.x is a power of two, at most 1024). */

template <typename R>
__device__ R block_reduce(R v, R *buf, bool is_max) {
    buf[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            R o = buf[threadIdx.x + s];
            buf[threadIdx.x] = is_max ? (o > buf[threadIdx.x] ? o : buf[threadIdx.x]) : buf[threadIdx.x] + o;
        }
        __syncthreads();
    }
    R r = buf[0];
    __syncthreads();
    return r;
}

extern "C" __global__ void softmax_rows(const T *x, T *y, i64 rows, i64 d) {
    extern __shared__ unsigned char smem[];
    A *buf = (A *)smem;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *xr = x + r * d;
        T *yr = y + r * d;
        A m = KAFFA_NEG_INF;
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) m = fmax(m, LD(xr, j));
        m = block_reduce<A>(m, buf, true);
        A s = 0;
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) s += exp(LD(xr, j) - m);
        s = block_reduce<A>(s, buf, false);
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) ST(yr, j, exp(LD(xr, j) - m) / s);
    }
}

/* dx = y * (dy - sum(dy * y)) per row. */
extern "C" __global__ void softmax_gradient_rows(const T *y, const T *dy, T *dx, i64 rows, i64 d) {
    extern __shared__ unsigned char smem[];
    A *buf = (A *)smem;
    for (i64 r = blockIdx.x; r < rows; r += gridDim.x) {
        const T *yr = y + r * d, *dyr = dy + r * d;
        T *dxr = dx + r * d;
        A s = 0;
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) s += LD(yr, j) * LD(dyr, j);
        s = block_reduce<A>(s, buf, false);
        for (i64 j = threadIdx.x; j < d; j += blockDim.x) ST(dxr, j, LD(yr, j) * (LD(dyr, j) - s));
    }
}
