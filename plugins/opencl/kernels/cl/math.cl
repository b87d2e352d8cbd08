/* Elementwise arithmetic. Binary ops broadcast through a geometry table g (bcast_offset); the
 * variadic ops take up to 4 inputs per launch and carry a partial result in an A-typed buffer, so
 * float16 sums round once, as the cpu kernels do. */

/* bcast_offset without the divisions when the collapsed problem is 1-d (same shapes, scalars). */
#define OFF(g, k, i) ((g)[0] == 1 ? (i) * (g)[2 + (k)] : bcast_offset((g), (k), (i)))

#ifdef INTDIV
/* C truncation; x / 0 gives 0 (as numpy) and MIN / -1 wraps: both would trap on a CPU device. */
#define DIV(x, y) ((y) == 0 ? (A)0 : (y) == -1 ? -(x) : (x) / (y))
#else
#define DIV(x, y) ((x) / (y))
#endif

#define BINARY(name, expr)                                                                        \
    __kernel void name(__global const T *a, __global const T *b, __global T *c,                   \
                       __global const int *g, const long n) {                                     \
        const long i = get_global_id(0);                                                          \
        if (i >= n) return;                                                                       \
        const A x = LD(a, OFF(g, 0, i)), y = LD(b, OFF(g, 1, i));                                 \
        ST(c, i, expr);                                                                           \
    }

BINARY(add, x + y)
BINARY(sub, x - y)
BINARY(mul, x * y)
BINARY(div, DIV(x, y))

/* r = combine(acc[i] if use_acc, x0[i], .., x{m-1}[i]); the last launch stores r / div as T into
 * y, earlier ones store r into acc_out (A). Unused x pointers repeat x0. */
#define VARIADIC(name, COMBINE)                                                                   \
    __kernel void name(__global const A *acc, const int use_acc, __global const T *x0,            \
                       __global const T *x1, __global const T *x2, __global const T *x3,          \
                       const int m, __global A *acc_out, __global T *y, const int last,           \
                       const A div, const long n) {                                               \
        const long i = get_global_id(0);                                                          \
        if (i >= n) return;                                                                       \
        A r = use_acc ? acc[i] : LD(x0, i);                                                       \
        if (use_acc) COMBINE(r, LD(x0, i));                                                       \
        if (m > 1) COMBINE(r, LD(x1, i));                                                         \
        if (m > 2) COMBINE(r, LD(x2, i));                                                         \
        if (m > 3) COMBINE(r, LD(x3, i));                                                         \
        if (last) ST(y, i, r / div);                                                              \
        else acc_out[i] = r;                                                                      \
    }

#define C_SUM(r, v) r += (v)
#define C_MAX(r, v) { const A v_ = (v); r = v_ > r ? v_ : r; }
#define C_MIN(r, v) { const A v_ = (v); r = v_ < r ? v_ : r; }

VARIADIC(sum_n, C_SUM)
VARIADIC(max_n, C_MAX)
VARIADIC(min_n, C_MIN)

#ifdef W /* the weight kernels are built with a weight type */
/* WeightedSum: r = acc + sum_k x_k * w_k over up to 4 pairs; weights are one-element buffers of
 * type W (Caffe2 keeps float32 weights for float16 X), read once per work-item. */
#ifdef W_HALF
#define LDW(p) ((A)vload_half(0, (p)))
#else
#define LDW(p) ((A)(p)[0])
#endif

__kernel void weighted_sum_n(__global const A *acc, const int use_acc,
                             __global const T *x0, __global const W *w0,
                             __global const T *x1, __global const W *w1,
                             __global const T *x2, __global const W *w2,
                             __global const T *x3, __global const W *w3,
                             const int m, __global A *acc_out, __global T *y, const int last,
                             const long n) {
    const long i = get_global_id(0);
    if (i >= n) return;
    A r = LD(x0, i) * LDW(w0);
    if (use_acc) r += acc[i];
    if (m > 1) r += LD(x1, i) * LDW(w1);
    if (m > 2) r += LD(x2, i) * LDW(w2);
    if (m > 3) r += LD(x3, i) * LDW(w3);
    if (last) ST(y, i, r);
    else acc_out[i] = r;
}

/* dX = dY * w, w one element of type W. */
__kernel void scale_by(__global const T *dy, __global const W *w, __global T *dx, const long n) {
    const long i = get_global_id(0);
    if (i < n) ST(dx, i, LD(dy, i) * LDW(w));
}

#endif

/* dX = dY / div (MeanGradient). */
__kernel void divide_by(__global const T *dy, __global T *dx, const A div, const long n) {
    const long i = get_global_id(0);
    if (i < n) ST(dx, i, LD(dy, i) / div);
}

/* MaxGradient / MinGradient: dX = X == Y ? dY : 0. */
__kernel void select_equal(__global const T *x, __global const T *y, __global const T *dy,
                           __global T *dx, const long n) {
    const long i = get_global_id(0);
    if (i < n) ST(dx, i, LD(x, i) == LD(y, i) ? LD(dy, i) : (A)0);
}

/* DivGradient at C's shape: dA = dC / B, dB = -dA * C, stored as O: T when no reduction follows,
 * else the arithmetic type (float for half), which the reduction rounds once. g broadcasts B. */
#ifdef O /* built with an output type */
#ifdef O_HALF
#define STO(p, i, v) vstore_half_rte((float)(v), (i), (p))
#else
#define STO(p, i, v) ((p)[(i)] = (O)(v))
#endif

__kernel void div_gradient(__global const T *dc, __global const T *b, __global const T *c,
                           __global O *da, __global O *db, __global const int *g, const long n) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const A q = LD(dc, i) / LD(b, OFF(g, 0, i));
    STO(da, i, q);
    STO(db, i, -q * LD(c, i));
}
#endif
