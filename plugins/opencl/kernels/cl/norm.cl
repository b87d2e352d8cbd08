/* SpatialBN, LRN, LayerNorm, Dropout and their gradients.
 * Per-channel (SpatialBN) and per-row (LayerNorm) statistics: one work-group of WG items per
 * channel/row, each item striding over the values, then a tree sum in local memory.
 * Channel layouts are (outer, C, inner): element (o, c, j) at (o * C + c) * inner + j. */

#define WG 128 /* work-group size of the reductions (norm.WG on the host) */

inline A wg_sum(A v, __local A *buf) {
    const int lid = get_local_id(0);
    buf[lid] = v;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = WG / 2; s > 0; s >>= 1) {
        if (lid < s) buf[lid] += buf[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    const A r = buf[0];
    barrier(CLK_LOCAL_MEM_FENCE); /* buf is reused by the next sum */
    return r;
}

/* The e-th of the m = outer * inner values of channel c. */
inline long chan_index(const long e, const int c, const int C, const long inner) {
    const long o = e / inner;
    return (o * C + c) * inner + (e - o * inner);
}

/* -- SpatialBN ---------------------------------------------------------------------------------- */

/* Training: batch mean and biased variance of channel c; writes the saved and running statistics
 * (T) and coef = [mean, inv_std] per channel (A, unrounded, for bn_apply). */
__kernel void bn_stats(__global const T *x, __global const T *rmean, __global const T *rvar,
                       __global A *coef, __global T *rm_out, __global T *rv_out,
                       __global T *saved_mean, __global T *saved_inv, const long outer, const int C,
                       const long inner, const A eps, const A momentum) {
    __local A buf[WG];
    const int c = get_group_id(0), lid = get_local_id(0);
    const long m = outer * inner;
    A s = 0;
    for (long e = lid; e < m; e += WG) s += LD(x, chan_index(e, c, C, inner));
    const A mu = wg_sum(s, buf) / (A)m;
    s = 0;
    for (long e = lid; e < m; e += WG) {
        const A d = LD(x, chan_index(e, c, C, inner)) - mu;
        s += d * d;
    }
    const A var = wg_sum(s, buf) / (A)m;
    if (lid == 0) {
        const A inv = (A)1 / sqrt(var + eps);
        coef[2 * c] = mu;
        coef[2 * c + 1] = inv;
        ST(saved_mean, c, mu);
        ST(saved_inv, c, inv);
        ST(rm_out, c, momentum * LD(rmean, c) + ((A)1 - momentum) * mu);
        /* the running variance takes the unbiased batch variance, as Caffe2 and cuDNN */
        ST(rv_out, c, momentum * LD(rvar, c) + ((A)1 - momentum) * ((A)m / (A)(m - 1)) * var);
    }
}

/* Inference: coef = [mean, 1 / sqrt(var + eps)] from the running statistics. */
__kernel void bn_test_coef(__global const T *mean, __global const T *var, __global A *coef,
                           const int C, const A eps) {
    const int c = get_global_id(0);
    if (c >= C) return;
    coef[2 * c] = LD(mean, c);
    coef[2 * c + 1] = (A)1 / sqrt(LD(var, c) + eps);
}

__kernel void bn_apply(__global const T *x, __global const T *scale, __global const T *bias,
                       __global const A *coef, __global T *y, const long n, const int C,
                       const long inner) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const int c = (int)((i / inner) % C);
    ST(y, i, (LD(x, i) - coef[2 * c]) * (LD(scale, c) * coef[2 * c + 1]) + LD(bias, c));
}

/* Per channel: dbias = sum(dY), dscale = sum(dY * xhat); coef = [mean, inv, scale * inv,
 * dbias / m, dscale / m] for bn_grad_apply (the last two are 0 in inference: the statistics are
 * constants there). is_test: stat is the running variance, else saved_inv_var. */
__kernel void bn_grad_stats(__global const T *x, __global const T *scale, __global const T *dy,
                            __global const T *mean, __global const T *stat, __global A *coef,
                            __global T *dscale, __global T *dbias, const long outer, const int C,
                            const long inner, const A eps, const int is_test) {
    __local A buf[WG];
    const int c = get_group_id(0), lid = get_local_id(0);
    const long m = outer * inner;
    const A mu = LD(mean, c);
    const A inv = is_test ? (A)1 / sqrt(LD(stat, c) + eps) : LD(stat, c);
    A sb = 0, ss = 0;
    for (long e = lid; e < m; e += WG) {
        const long i = chan_index(e, c, C, inner);
        const A g = LD(dy, i);
        sb += g;
        ss += g * (LD(x, i) - mu) * inv;
    }
    sb = wg_sum(sb, buf);
    ss = wg_sum(ss, buf);
    if (lid == 0) {
        ST(dbias, c, sb);
        ST(dscale, c, ss);
        __global A *k = coef + 5 * c;
        k[0] = mu;
        k[1] = inv;
        k[2] = LD(scale, c) * inv;
        k[3] = is_test ? (A)0 : sb / (A)m;
        k[4] = is_test ? (A)0 : ss / (A)m;
    }
}

__kernel void bn_grad_apply(__global const T *x, __global const T *dy, __global const A *coef,
                            __global T *dx, const long n, const int C, const long inner) {
    const long i = get_global_id(0);
    if (i >= n) return;
    __global const A *k = coef + 5 * ((i / inner) % C);
    const A xhat = (LD(x, i) - k[0]) * k[1];
    ST(dx, i, k[2] * (LD(dy, i) - k[3] - xhat * k[4]));
}

/* -- LRN ---------------------------------------------------------------------------------------- */

/* bias + alpha / size * (sum of x^2 over the channels c - (size-1)/2 .. c + size/2, clipped). */
inline A lrn_scale_at(__global const T *x, const long i, const int C, const long inner,
                      const int size, const A alpha, const A bias) {
    const int c = (int)((i / inner) % C);
    const long c0 = i - c * inner;
    A s = 0;
    for (int k = max(c - (size - 1) / 2, 0); k < min(c - (size - 1) / 2 + size, C); ++k) {
        const A v = LD(x, c0 + k * inner);
        s += v * v;
    }
    return bias + alpha / (A)size * s;
}

/* scale is written when with_scale (LRN's optional output). */
__kernel void lrn(__global const T *x, __global T *y, __global T *scale, const long n, const int C,
                  const long inner, const int size, const A alpha, const A beta, const A bias,
                  const int with_scale) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const A s = lrn_scale_at(x, i, C, inner, size, alpha, bias);
    ST(y, i, LD(x, i) * pow(s, -beta));
    if (with_scale) ST(scale, i, s);
}

/* LRNGradient without a scale input: the scale, unrounded (A). */
__kernel void lrn_scale(__global const T *x, __global A *scale, const long n, const int C,
                        const long inner, const int size, const A alpha, const A bias) {
    const long i = get_global_id(0);
    if (i < n) scale[i] = lrn_scale_at(x, i, C, inner, size, alpha, bias);
}

/* The scale is LRN's output (T) with SCALE_T, else lrn_scale's (A). The window is symmetric, so
 * the outputs that see channel c are the window around c. */
#ifdef SCALE_T
#define S T
#define LDS(p, i) LD(p, i)
#else
#define S A
#define LDS(p, i) ((p)[(i)])
#endif
__kernel void lrn_gradient(__global const T *x, __global const T *y, __global const T *dy,
                           __global const S *scale, __global T *dx, const long n, const int C,
                           const long inner, const int size, const A alpha, const A beta) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const int c = (int)((i / inner) % C);
    const long c0 = i - c * inner;
    A w = 0;
    for (int k = max(c - (size - 1) / 2, 0); k < min(c - (size - 1) / 2 + size, C); ++k) {
        const long j = c0 + k * inner;
        w += LD(dy, j) * LD(y, j) / LDS(scale, j);
    }
    const A g = LD(dy, i) * pow(LDS(scale, i), -beta) - (A)2 * alpha * beta / (A)size * LD(x, i) * w;
    ST(dx, i, g);
}

/* -- LayerNorm ---------------------------------------------------------------------------------- */

/* One work-group per row of D values; gamma/beta are read when affine. */
__kernel void layer_norm(__global const T *x, __global const T *gamma, __global const T *beta,
                         __global T *y, __global T *mean, __global T *std, const long D, const A eps,
                         const int affine) {
    __local A buf[WG];
    const long row = get_group_id(0), base = row * D;
    const int lid = get_local_id(0);
    A s = 0;
    for (long j = lid; j < D; j += WG) s += LD(x, base + j);
    const A mu = wg_sum(s, buf) / (A)D;
    s = 0;
    for (long j = lid; j < D; j += WG) {
        const A d = LD(x, base + j) - mu;
        s += d * d;
    }
    const A sd = sqrt(wg_sum(s, buf) / (A)D + eps);
    for (long j = lid; j < D; j += WG) {
        A v = (LD(x, base + j) - mu) / sd;
        if (affine) v = v * LD(gamma, j) + LD(beta, j);
        ST(y, base + j, v);
    }
    if (lid == 0) {
        ST(mean, row, mu);
        ST(std, row, sd);
    }
}

/* dX per row, with g = dY (* gamma): (g - mean(g) - xhat * mean(g * xhat)) / std. */
__kernel void layer_norm_gradient(__global const T *dy, __global const T *x, __global const T *mean,
                                  __global const T *std, __global const T *gamma, __global T *dx,
                                  const long D, const int affine) {
    __local A buf[WG];
    const long row = get_group_id(0), base = row * D;
    const int lid = get_local_id(0);
    const A mu = LD(mean, row), sd = LD(std, row);
    A sg = 0, sgx = 0;
    for (long j = lid; j < D; j += WG) {
        const A g = affine ? LD(dy, base + j) * LD(gamma, j) : LD(dy, base + j);
        sg += g;
        sgx += g * (LD(x, base + j) - mu) / sd;
    }
    sg = wg_sum(sg, buf) / (A)D;
    sgx = wg_sum(sgx, buf) / (A)D;
    for (long j = lid; j < D; j += WG) {
        const A g = affine ? LD(dy, base + j) * LD(gamma, j) : LD(dy, base + j);
        const A xhat = (LD(x, base + j) - mu) / sd;
        ST(dx, base + j, (g - sg - xhat * sgx) / sd);
    }
}

/* dgamma and dbeta: one work-item per column, summing over the rows. */
__kernel void layer_norm_affine_gradient(__global const T *dy, __global const T *x,
                                         __global const T *mean, __global const T *std,
                                         __global T *dgamma, __global T *dbeta, const long rows,
                                         const long D) {
    const long j = get_global_id(0);
    if (j >= D) return;
    A sg = 0, sb = 0;
    for (long r = 0; r < rows; ++r) {
        const A g = LD(dy, r * D + j);
        sg += g * (LD(x, r * D + j) - LD(mean, r)) / LD(std, r);
        sb += g;
    }
    ST(dgamma, j, sg);
    ST(dbeta, j, sb);
}

/* -- Dropout ------------------------------------------------------------------------------------ */

/* Keep where the counter-based draw u(seed, stream, i) >= ratio: independent of the launch
 * geometry, and a new stream per run. mask is written when with_mask. */
__kernel void dropout(__global const T *x, __global T *y, __global uchar *mask, const long n,
                      const uint seed, const uint stream, const float ratio, const A scale,
                      const int with_mask) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const bool keep = kaffa_uniform01(seed ^ (uint)(i >> 32), stream, (uint)i) >= ratio;
    ST(y, i, keep ? LD(x, i) * scale : (A)0);
    if (with_mask) mask[i] = keep;
}

__kernel void dropout_grad(__global const T *dy, __global const uchar *mask, __global T *dx,
                           const long n, const A scale) {
    const long i = get_global_id(0);
    if (i < n) ST(dx, i, mask[i] ? LD(dy, i) * scale : (A)0);
}
