/* Unary math and its gradients: one work-item per element. Abs, Negative, Clip and Cast also build
 * for integer or bool T (the host then defines INT_T and A = T): the float-only math is left out. */

#define MAP(name, expr)                                                         \
    __kernel void name(__global const T *x, __global T *y, const long n) {     \
        const long i = get_global_id(0);                                        \
        if (i < n) {                                                            \
            const A v = LD(x, i);                                               \
            ST(y, i, (expr));                                                   \
        }                                                                       \
    }

MAP(abs_, v < (A)0 ? -v : v)
MAP(negative, -v)

/* max then min with comparisons, as Caffe2: NaN passes through, and with lo > hi all become hi. */
__kernel void clip(__global const T *x, __global T *y, const long n, const A lo, const A hi) {
    const long i = get_global_id(0);
    if (i < n) {
        A v = LD(x, i);
        v = v < lo ? lo : v;
        ST(y, i, v > hi ? hi : v);
    }
}

#ifndef INT_T
MAP(exp_, exp(v))
MAP(log_, log(v))
MAP(sqrt_, sqrt(v))
MAP(sqr, v * v)

__kernel void scale(__global const T *x, __global T *y, const long n, const A s) {
    const long i = get_global_id(0);
    if (i < n) ST(y, i, LD(x, i) * s);
}

__kernel void clip_gradient(__global const T *y, __global const T *dy, __global T *dx, const long n, const A lo,
                            const A hi) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(y, i);
        ST(dx, i, v > lo && v < hi ? LD(dy, i) : (A)0);
    }
}

__kernel void abs_gradient(__global const T *x, __global const T *dy, __global T *dx, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(x, i), d = LD(dy, i);
        ST(dx, i, v > (A)0 ? d : v < (A)0 ? -d : (A)0);
    }
}

__kernel void pow_scalar(__global const T *x, __global T *y, const long n, const A e) {
    const long i = get_global_id(0);
    if (i < n) ST(y, i, pow(LD(x, i), e));
}

/* g: kaffa.launch.broadcast_geometry(Y, X, E). */
__kernel void pow_tensor(__global const int *g, __global const T *x, __global const T *e, __global T *y,
                         const long n) {
    const long i = get_global_id(0);
    if (i < n) ST(y, i, pow(LD(x, bcast_offset(g, 0, i)), LD(e, bcast_offset(g, 1, i))));
}

#ifdef W /* built only where the host names the work type */
/* Per element of Y: dX = E * X^(E-1) * dY and dE = Y * log(X) * dY, kept in W (float for half)
 * until they are summed to the shapes of X and E. */
__kernel void pow_gradient(__global const int *g, __global const T *x, __global const T *e,
                           __global const T *y, __global const T *dy, __global W *dxf, __global W *def,
                           const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const A xv = LD(x, bcast_offset(g, 0, i)), ev = LD(e, bcast_offset(g, 1, i)), d = LD(dy, i);
        dxf[i] = ev * pow(xv, ev - (A)1) * d;
        def[i] = LD(y, i) * log(xv) * d;
    }
}
#endif
#endif /* INT_T */

#ifdef U /* built only where the host names the target type */
/* Y = X as U. Float to integer truncates toward zero (C's conversion); to bool tests != 0; to half
 * rounds once from the source (double included). */
__kernel void cast(__global const T *x, __global U *y, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(x, i);
#if defined(U_HALF) && defined(KAFFA_FP64)
        vstore_half_rte((double)v, i, y);
#elif defined(U_HALF)
        vstore_half_rte((float)v, i, y);
#elif defined(U_BOOL)
        y[i] = (U)(v != (A)0);
#else
        y[i] = (U)v;
#endif
    }
}
#endif
