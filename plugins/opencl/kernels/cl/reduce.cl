/* Row reductions and their broadcasting inverses.
 *
 * A reduction is `kept` output rows of `red` elements each. Where those elements lie in X is given
 * by a table g = [nk, kept dims..., kept strides..., nr, reduced dims..., reduced strides...] (see
 * reduce.reduce_geometry in the host code), so reduced axes need not trail: no transpose copy.
 * Sums accumulate in A (float for half); the result is stored as O (O_HALF: half) divided by div.
 */

#define OFF(g, k, i) ((g)[0] == 1 ? (i) * (g)[2 + (k)] : bcast_offset((g), (k), (i)))

#ifdef O /* the row reductions are built with an output type */
#ifdef O_HALF
#define STO(p, i, v) vstore_half_rte((float)(v), (i), (p))
#else
#define STO(p, i, v) ((p)[(i)] = (O)(v))
#endif

/* Offset of flat index idx over [nd, dims..., strides...]; 1-d (the common case) needs no division. */
inline long geo_offset(__global const int *g, long idx) {
    const int nd = g[0];
    if (nd == 1) return idx * g[2];
    return bcast_offset(g, 0, idx);
}

#define SUM_INIT(off0) ((A)0)
#define MAX_INIT(off0) LD(x, off0) /* red >= 1 (checked on the host); max is idempotent */
#define SUM_COMBINE(r, v) r += (v)
#define MAX_COMBINE(r, v) { const A v_ = (v); r = v_ > r ? v_ : r; }
#define X_ONLY(o) LD(x, o)
#define X_TIMES_X2(o) (LD(x, o) * LD(x2, o))

/* One work-item per output row: for many rows (a GPU fills up with rows). */
#define ROWS(name, INIT, LOAD, COMBINE)                                                           \
    __kernel void name(__global const T *x, __global const T *x2, __global O *y,                  \
                       __global const int *g, const long kept, const long red, const A div) {     \
        const long row = get_global_id(0);                                                        \
        if (row >= kept) return;                                                                  \
        __global const int *gr = g + 1 + 2 * g[0];                                                \
        const long base = geo_offset(g, row);                                                     \
        A r = INIT(base);                                                                         \
        for (long j = 0; j < red; ++j) COMBINE(r, LOAD(base + geo_offset(gr, j)));                \
        STO(y, row, r / div);                                                                     \
    }

/* One work-group per output row, a tree in local memory: for few, long rows (SumElements). The
 * local size is a power of two. */
#define GROUPS(name, INIT, LOAD, COMBINE)                                                         \
    __kernel void name(__global const T *x, __global const T *x2, __global O *y,                  \
                       __global const int *g, const long kept, const long red, const A div,       \
                       __local A *scratch) {                                                      \
        const long row = get_group_id(0);                                                         \
        const int lid = get_local_id(0), L = get_local_size(0);                                   \
        __global const int *gr = g + 1 + 2 * g[0];                                                \
        const long base = geo_offset(g, row);                                                     \
        A r = INIT(base);                                                                         \
        for (long j = lid; j < red; j += L) COMBINE(r, LOAD(base + geo_offset(gr, j)));           \
        scratch[lid] = r;                                                                         \
        barrier(CLK_LOCAL_MEM_FENCE);                                                             \
        for (int s = L / 2; s > 0; s >>= 1) {                                                     \
            if (lid < s) COMBINE(scratch[lid], scratch[lid + s]);                                 \
            barrier(CLK_LOCAL_MEM_FENCE);                                                         \
        }                                                                                         \
        if (lid == 0) STO(y, row, scratch[0] / div);                                              \
    }

ROWS(sum_rows, SUM_INIT, X_ONLY, SUM_COMBINE)
ROWS(max_rows, MAX_INIT, X_ONLY, MAX_COMBINE)
ROWS(dot_rows, SUM_INIT, X_TIMES_X2, SUM_COMBINE)
GROUPS(sum_groups, SUM_INIT, X_ONLY, SUM_COMBINE)
GROUPS(max_groups, MAX_INIT, X_ONLY, MAX_COMBINE)
GROUPS(dot_groups, SUM_INIT, X_TIMES_X2, SUM_COMBINE)

#endif

/* dX = dY / div broadcast back to X's shape: g = broadcast_geometry(X, dY kept shape). */
__kernel void expand(__global const T *dy, __global T *dx, __global const int *g, const A div,
                     const long n) {
    const long i = get_global_id(0);
    if (i < n) ST(dx, i, LD(dy, OFF(g, 0, i)) / div);
}

/* ReduceMaxGradient: dX = X == Y ? dY : 0, Y and dY broadcast back by g. */
__kernel void max_gradient(__global const T *dy, __global const T *x, __global const T *y,
                           __global T *dx, __global const int *g, const long n) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const long o = OFF(g, 0, i);
    ST(dx, i, LD(x, i) == LD(y, o) ? LD(dy, o) : (A)0);
}
