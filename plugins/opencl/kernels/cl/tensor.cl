/* Tensor family. Pure data movement is built with RAW and T = an unsigned type of the element's
 * size (uchar/ushort/uint/ulong), so one build serves every dtype of that size and moves bits as
 * they are. TileGradient and SparseToDense add, so they are built without RAW for the real T.
 * Index kernels need an index type I. One work-item per output element throughout. */

#ifdef RAW

__kernel void copy(__global const T *x, __global T *y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = x[i];
}

__kernel void zero(__global T *y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = (T)0;
}

/* y[i] = x[base + offset of i under g] (g as kaffa.launch.transpose_geometry packs it):
 * Transpose, Slice and Tile (a zero stride repeats). */
__kernel void strided_read(__global const T *x, __global T *y, __global const int *g, const long base,
                           const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = x[base + bcast_offset(g, 0, i)];
}

/* The inverse: y[base + offset of i under g] = x[i] (SliceGradient places dY in zeros). */
__kernel void strided_write(__global const T *x, __global T *y, __global const int *g, const long base,
                            const long n) {
    const long i = get_global_id(0);
    if (i < n) y[base + bcast_offset(g, 0, i)] = x[i];
}

/* Concat/Split: one input is `block` contiguous elements per outer row of the joined tensor,
 * whose rows have `row` elements; the input starts at `off` in each row. */
__kernel void concat_part(__global const T *x, __global T *y, const long block, const long row,
                          const long off, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const long o = i / block;
        y[o * row + off + (i - o * block)] = x[i];
    }
}

__kernel void split_part(__global const T *x, __global T *y, const long block, const long row,
                         const long off, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const long o = i / block;
        y[i] = x[o * row + off + (i - o * block)];
    }
}

#ifdef I /* the index kernels, built only with an index type I */
/* Gather along axis 0 with I indices; an index out of [0, rows) writes 0 instead of reading out
 * of bounds (the host reports it from index_range). */
__kernel void gather(__global const T *data, __global const I *idx, __global T *y, const long rows,
                     const long inner, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const long k = i / inner;
        const long j = (long)idx[k];
        y[i] = (j >= 0 && j < rows) ? data[j * inner + (i - k * inner)] : (T)0;
    }
}

/* [min, max] of n indices into out, by one work-group of RANGE_WG items. */
#define RANGE_WG 64
__kernel void index_range(__global const I *idx, const long n, __global long *out) {
    __local long lo[RANGE_WG], hi[RANGE_WG];
    const int t = get_local_id(0);
    long a = LONG_MAX, b = LONG_MIN;
    for (long i = t; i < n; i += RANGE_WG) {
        const long v = (long)idx[i];
        a = min(a, v);
        b = max(b, v);
    }
    lo[t] = a;
    hi[t] = b;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = RANGE_WG / 2; s > 0; s >>= 1) {
        if (t < s) {
            lo[t] = min(lo[t], lo[t + s]);
            hi[t] = max(hi[t], hi[t + s]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (t == 0) {
        out[0] = lo[0];
        out[1] = hi[0];
    }
}

#endif

#else /* typed */

/* dX[o, j] = sum over t of dY[o, t, j]; j < m (the tiled block), dY rows have tiles * m. */
__kernel void tile_gradient(__global const T *dy, __global T *dx, const long tiles, const long m,
                            const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const long o = i / m;
        __global const T *p = dy + o * tiles * m;
        const long j = i - o * m;
        A acc = (A)0;
        for (long t = 0; t < tiles; ++t) acc += LD(p, t * m + j);
        ST(dx, i, acc);
    }
}

#ifdef I
/* y[r, c] = sum of values[k, c] over the k with idx[k] == r, in k order: deterministic, no
 * atomics (which half and double lack), at the cost of scanning the indices per output. */
__kernel void sparse_to_dense(__global const I *idx, __global const T *values, __global T *y,
                              const long nidx, const long inner, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const long r = i / inner, c = i - r * inner;
        A acc = (A)0;
        for (long k = 0; k < nidx; ++k)
            if ((long)idx[k] == r) acc += LD(values, k * inner + c);
        ST(y, i, acc);
    }
}
#endif
#endif
