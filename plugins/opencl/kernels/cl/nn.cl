/* Convolution helpers around the GEMM of blas.cl: im2col, col2im (a gather: no atomics), a
 * gather-style permute (for NHWC and for regrouping dY) and per-channel sums (bias gradients).
 *
 * Window geometry g (int32, kaffa_opencl.kernels.nn._geometry), over nsp spatial axes:
 *   g[0] = nsp, then per axis blocks of nsp: S (input sizes), O (output sizes), K (kernel),
 *   stride, dilation, begin pad.  "Input" is the big side of the convolution (Conv's X).
 */

#define G_S(d) g[1 + (d)]
#define G_O(d) g[1 + nsp + (d)]
#define G_K(d) g[1 + 2 * nsp + (d)]
#define G_ST(d) g[1 + 3 * nsp + (d)]
#define G_DI(d) g[1 + 4 * nsp + (d)]
#define G_PB(d) g[1 + 5 * nsp + (d)]

/* cols from x [*, C, *S] (samples s0 .. s0 + cnt - 1): row r = c * prod(K) + tap, column p an
 * output position. rows_major = 0: cols [cnt, C*kp, op]; 1: cols [C*kp, cnt, op]. */
__kernel void im2col(__global const T *x, __global T *cols, __global const int *g, const int C,
                     const int cnt, const int s0, const int kp, const int op, const int sp,
                     const int rows_major, const long total) {
    const long idx = get_global_id(0);
    if (idx >= total) return;
    const int nsp = g[0];
    const int p = (int)(idx % op);
    const long q = idx / op;
    int r, s;
    if (rows_major) {
        s = (int)(q % cnt);
        r = (int)(q / cnt);
    } else {
        r = (int)(q % (C * kp));
        s = (int)(q / (C * kp));
    }
    const int c = r / kp;
    int t = r % kp, pp = p;
    long off = 0;
    bool inside = true;
    int pos[8];
    for (int d = nsp - 1; d >= 0; --d) {
        const int kd = t % G_K(d), od = pp % G_O(d);
        t /= G_K(d);
        pp /= G_O(d);
        pos[d] = od * G_ST(d) - G_PB(d) + kd * G_DI(d);
        inside = inside && pos[d] >= 0 && pos[d] < G_S(d);
    }
    for (int d = 0; d < nsp; ++d) off = off * G_S(d) + pos[d];
    A v = (A)0;
    if (inside) v = LD(x, ((long)(s0 + s) * C + c) * sp + off);
    ST(cols, idx, v);
}

/* dx [*, C, *S] (samples s0 ..) from cols [cnt, C*kp, op]: each input cell sums the column
 * entries of every (tap, output position) whose window reads it; plus bias[c] when given. */
__kernel void col2im(__global const T *cols, __global T *dx, __global const T *bias,
                     __global const int *g, const int C, const int s0, const int kp, const int op,
                     const int sp, const long total) {
    const long idx = get_global_id(0); /* over [cnt, C, *S] */
    if (idx >= total) return;
    const int nsp = g[0];
    const int i_flat = (int)(idx % sp);
    const long sc = idx / sp; /* s * C + c */
    const int c = (int)(sc % C);
    int ii[8];
    int rest = i_flat;
    for (int d = nsp - 1; d >= 0; --d) {
        ii[d] = rest % G_S(d);
        rest /= G_S(d);
    }
    __global const T *col = cols + sc * kp * op; /* rows c * kp .. of sample s */
    A acc = (A)0;
    for (int t = 0; t < kp; ++t) {
        int tt = t, p = 0;
        bool ok = true;
        int kd_[8];
        for (int d = nsp - 1; d >= 0; --d) {
            kd_[d] = tt % G_K(d);
            tt /= G_K(d);
        }
        for (int d = 0; d < nsp && ok; ++d) {
            const int num = ii[d] + G_PB(d) - kd_[d] * G_DI(d);
            if (num < 0 || num % G_ST(d)) {
                ok = false;
            } else {
                const int o = num / G_ST(d);
                if (o >= G_O(d)) ok = false;
                p = p * G_O(d) + o;
            }
        }
        if (ok) acc += LD(col, (long)t * op + p);
    }
    if (bias) acc += LD(bias, c);
    ST(dx, (long)s0 * C * sp + idx, acc);
}

/* y = x permuted: geometry [nd, out dims..., input strides in out order...] (gather). */
__kernel void permute(__global const T *x, __global T *y, __global const int *g, const long n) {
    const long idx = get_global_id(0);
    if (idx >= n) return;
    const int nd = g[0];
    long rest = idx, off = 0;
    for (int d = nd - 1; d >= 0; --d) {
        const long q = rest / g[1 + d];
        off += (rest - q * g[1 + d]) * g[1 + nd + d];
        rest = q;
    }
    ST(y, idx, LD(x, off));
}

/* out[c] = sum over o, i of x[(o * C + c) * inner + i]. */
__kernel void channel_sum(__global const T *x, __global T *out, const int outer, const int C,
                          const int inner) {
    const int c = get_global_id(0);
    if (c >= C) return;
    A acc = (A)0;
    for (int o = 0; o < outer; ++o) {
        __global const T *row = x + ((long)o * C + c) * inner;
        for (int i = 0; i < inner; ++i) acc += LD(row, i);
    }
    ST(out, c, acc);
}
