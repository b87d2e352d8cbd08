/* Losses and metrics. X is viewed as [n, d] rows of a C-contiguous buffer. The host defines
 *   I          the label type (int or long)
 *   G, G_HALF  the type of a loss-gradient scalar (any float type, not necessarily T)
 *   WG         the work-group size of the single-group reductions (a power of two)
 *   LABEL_PROB, WEIGHTED, MODE  per-op switches
 * A label outside [0, d) gives NaN rather than an out-of-bounds read (the host does not read
 * labels back to validate them). */

#if G_HALF
#define LDG(p, i) vload_half((i), (p))
#else
#define LDG(p, i) ((A)(p)[(i)])
#endif

#ifdef KAFFA_FP64
#define THRESHOLD ((A)1e-20) /* Caffe2's kLOG_THRESHOLD */
#else
#define THRESHOLD 1e-20f
#endif
#define NAN_A ((A)NAN)

#if LABEL_PROB
#define TL T /* probability rows */
#else
#define TL I /* class indices */
#endif

/* The sum of v over the work-group, returned to every item. */
inline A wg_sum(__local A *buf, A v) {
    const int l = get_local_id(0);
    barrier(CLK_LOCAL_MEM_FENCE); /* buf may still be read from a previous call */
    buf[l] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = WG / 2; s > 0; s >>= 1) {
        if (l < s) buf[l] += buf[l + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    return buf[0];
}

/* -- SoftmaxWithLoss: one row per work-item, then one work-group for the weighted mean -------- */

__kernel void softmax_loss_rows(__global const T *x, __global const TL *t, __global T *p,
                                __global A *row_loss, const long n, const long d) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const long o = i * d;
    A m = -INFINITY;
    for (long j = 0; j < d; ++j) m = fmax(m, LD(x, o + j));
    A s = 0;
    for (long j = 0; j < d; ++j) s += exp(LD(x, o + j) - m);
    const A ls = log(s); /* log P = (x - m) - ls: subtracting m first keeps large logits exact */
    for (long j = 0; j < d; ++j) ST(p, o + j, exp(LD(x, o + j) - m - ls));
#if LABEL_PROB
    A loss = 0;
    for (long j = 0; j < d; ++j) loss -= LD(t, o + j) * (LD(x, o + j) - m - ls);
#else
    const long l = t[i];
    const A loss = l >= 0 && l < d ? ls - (LD(x, o + l) - m) : NAN_A;
#endif
    row_loss[i] = loss;
}

__kernel void softmax_loss_total(__global const A *row_loss, __global const T *w, __global T *loss,
                                 const long n, const A scale) {
    __local A buf[WG];
    A num = 0, den = 0;
    for (long i = get_local_id(0); i < n; i += WG) {
#if WEIGHTED
        const A wi = LD(w, i);
#else
        const A wi = 1;
#endif
        num += wi * row_loss[i];
        den += wi;
    }
    num = wg_sum(buf, num);
    den = wg_sum(buf, den);
    if (get_local_id(0) == 0) ST(loss, 0, den != 0 ? num * scale / den : (A)0);
}

/* factor = scale * dLoss / sum(w) (n without weights; 0 when that is 0). */
__kernel void softmax_loss_factor(__global const T *w, __global const G *dloss, __global A *factor,
                                  const long n, const A scale) {
#if WEIGHTED
    __local A buf[WG];
    A den = 0;
    for (long i = get_local_id(0); i < n; i += WG) den += LD(w, i);
    den = wg_sum(buf, den);
#else
    const A den = (A)n;
#endif
    if (get_local_id(0) == 0) factor[0] = den != 0 ? scale / den * LDG(dloss, 0) : (A)0;
}

/* dX = (P - onehot(label)) * w_i * factor, or (P * sum_j t_ij - t) * w_i * factor. */
__kernel void softmax_loss_grad(__global const TL *t, __global const T *w, __global const T *p,
                                __global const A *factor, __global T *dx, const long n, const long d) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const long o = i * d;
#if WEIGHTED
    const A f = LD(w, i) * factor[0];
#else
    const A f = factor[0];
#endif
#if LABEL_PROB
    A ts = 0;
    for (long j = 0; j < d; ++j) ts += LD(t, o + j);
    for (long j = 0; j < d; ++j) ST(dx, o + j, (LD(p, o + j) * ts - LD(t, o + j)) * f);
#else
    const long l = t[i];
    const A bad = l >= 0 && l < d ? (A)0 : NAN_A;
    for (long j = 0; j < d; ++j) ST(dx, o + j, (LD(p, o + j) - (j == l ? (A)1 : bad)) * f);
#endif
}

/* -- LabelCrossEntropy / CrossEntropy ------------------------------------------------------------ */

__kernel void label_xent(__global const T *x, __global const I *t, __global T *y, const long n,
                         const long d) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const long l = t[i];
    ST(y, i, l >= 0 && l < d ? -log(fmax(LD(x, i * d + l), THRESHOLD)) : NAN_A);
}

__kernel void label_xent_grad(__global const T *x, __global const I *t, __global const T *dy,
                              __global T *dx, const long n, const long d) {
    const long e = get_global_id(0);
    if (e >= n * d) return;
    const long i = e / d, l = t[i];
    A v = 0;
    if (l < 0 || l >= d) v = NAN_A;
    else if (e - i * d == l) v = -LD(dy, i) / fmax(LD(x, e), THRESHOLD);
    ST(dx, e, v);
}

__kernel void xent(__global const T *x, __global const T *t, __global T *y, const long n, const long d) {
    const long i = get_global_id(0);
    if (i >= n) return;
    A s = 0;
    for (long e = i * d; e < (i + 1) * d; ++e) s += LD(t, e) * log(fmax(LD(x, e), THRESHOLD));
    ST(y, i, -s);
}

__kernel void xent_grad(__global const T *x, __global const T *t, __global const T *dy, __global T *dx,
                        const long n, const long d) {
    const long e = get_global_id(0);
    if (e < n * d) ST(dx, e, -LD(t, e) * LD(dy, e / d) / fmax(LD(x, e), THRESHOLD));
}

/* -- SigmoidCrossEntropyWithLogits: MODE 0 plain, 1 log_D_trick, 2 unjoined_lr_loss ------------- */

inline A log1pexp(A x) { return fmax(x, (A)0) + log1p(exp(-fabs(x))); } /* log(1 + e^x) */

inline A sigm(A x) {
    const A e = exp(-fabs(x));
    return x >= 0 ? 1 / (1 + e) : e / (1 + e);
}

inline A sxent_f(A x, A t) {
#if MODE == 1
    return (2 * t - 1) * -log1pexp(-x);
#elif MODE == 2
    return t * x - (1 - t) * log1pexp(x);
#else
    return t * x - log1pexp(x);
#endif
}

inline A sxent_df(A x, A t) {
#if MODE == 1
    return (2 * t - 1) * sigm(-x);
#elif MODE == 2
    return t - (1 - t) * sigm(x);
#else
    return t - sigm(x);
#endif
}

/* y[i] = -mean_j f(x[i, j], t[i, j]) over the last dim (inner). */
__kernel void sigmoid_xent(__global const T *x, __global const T *t, __global T *y, const long n,
                           const long inner) {
    const long i = get_global_id(0);
    if (i >= n) return;
    A s = 0;
    for (long e = i * inner; e < (i + 1) * inner; ++e) s += sxent_f(LD(x, e), LD(t, e));
    ST(y, i, -s / inner);
}

__kernel void sigmoid_xent_grad(__global const T *dy, __global const T *x, __global const T *t,
                                __global T *dx, const long size, const long inner) {
    const long e = get_global_id(0);
    if (e < size) ST(dx, e, -LD(dy, e / inner) / inner * sxent_df(LD(x, e), LD(t, e)));
}

/* -- AveragedLoss, SquaredL2Distance ----------------------------------------------------------- */

__kernel void averaged_loss(__global const T *x, __global T *y, const long size) {
    __local A buf[WG];
    A s = 0;
    for (long i = get_local_id(0); i < size; i += WG) s += LD(x, i);
    s = wg_sum(buf, s);
    if (get_local_id(0) == 0) ST(y, 0, s / size);
}

__kernel void averaged_loss_grad(__global const G *dy, __global T *dx, const long size) {
    const long i = get_global_id(0);
    if (i < size) ST(dx, i, LDG(dy, 0) / size);
}

__kernel void l2_distance(__global const T *x, __global const T *y, __global T *z, const long n,
                          const long d) {
    const long i = get_global_id(0);
    if (i >= n) return;
    A s = 0;
    for (long e = i * d; e < (i + 1) * d; ++e) {
        const A v = LD(x, e) - LD(y, e);
        s += v * v;
    }
    ST(z, i, s / 2);
}

__kernel void l2_distance_grad(__global const T *x, __global const T *y, __global const T *dd,
                               __global T *dx, __global T *dy, const long n, const long d) {
    const long e = get_global_id(0);
    if (e >= n * d) return;
    const A v = (LD(x, e) - LD(y, e)) * LD(dd, e / d);
    ST(dx, e, v);
    ST(dy, e, -v);
}

/* -- Accuracy: one work-group; a row hits when fewer than top_k classes rank ahead of its label
 * (a higher score, or an equal one at a lower index). ----------------------------------------- */

__kernel void accuracy(__global const T *x, __global const I *t, __global float *out, const long n,
                       const long d, const long top_k) {
    __local A buf[WG];
    A hits = 0, bad = 0;
    for (long i = get_local_id(0); i < n; i += WG) {
        const long l = t[i];
        if (l < 0 || l >= d) {
            bad += 1;
            continue;
        }
        const A s = LD(x, i * d + l);
        long ahead = 0;
        for (long j = 0; j < d && ahead < top_k; ++j) {
            const A v = LD(x, i * d + j);
            ahead += v > s || (v == s && j < l);
        }
        hits += ahead < top_k;
    }
    hits = wg_sum(buf, hits);
    bad = wg_sum(buf, bad);
    if (get_local_id(0) == 0) out[0] = bad != 0 ? NAN : (float)(hits / n);
}
