/* Activations and their gradients: one work-item per element (Softmax: one per row). */

__kernel void relu(__global const T *x, __global T *y, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(x, i);
        ST(y, i, v > (A)0 ? v : (A)0);
    }
}

__kernel void relu_gradient(__global const T *y, __global const T *dy, __global T *dx, const long n) {
    const long i = get_global_id(0);
    if (i < n) ST(dx, i, LD(y, i) > (A)0 ? LD(dy, i) : (A)0);
}

__kernel void sigmoid(__global const T *x, __global T *y, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        /* Two branches so exp never overflows. */
        const A v = LD(x, i), e = exp(-fabs(v));
        ST(y, i, v >= (A)0 ? (A)1 / ((A)1 + e) : e / ((A)1 + e));
    }
}

__kernel void sigmoid_gradient(__global const T *y, __global const T *dy, __global T *dx, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(y, i);
        ST(dx, i, LD(dy, i) * v * ((A)1 - v));
    }
}

__kernel void tanh_(__global const T *x, __global T *y, const long n) {
    const long i = get_global_id(0);
    if (i < n) ST(y, i, tanh(LD(x, i)));
}

__kernel void tanh_gradient(__global const T *y, __global const T *dy, __global T *dx, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(y, i);
        ST(dx, i, LD(dy, i) * ((A)1 - v * v));
    }
}

__kernel void leaky_relu(__global const T *x, __global T *y, const long n, const A alpha) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(x, i);
        ST(y, i, v > (A)0 ? v : v * alpha);
    }
}

__kernel void leaky_relu_gradient(__global const T *y, __global const T *dy, __global T *dx, const long n,
                                  const A alpha) {
    const long i = get_global_id(0);
    if (i < n) {
        const A d = LD(dy, i);
        ST(dx, i, LD(y, i) > (A)0 ? d : d * alpha);
    }
}

/* Elu and Selu: scale * (x > 0 ? x : alpha * (e^x - 1)); Elu has scale 1. */
__kernel void elu(__global const T *x, __global T *y, const long n, const A alpha, const A scale) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(x, i);
        ST(y, i, (v > (A)0 ? v : alpha * expm1(v)) * scale);
    }
}

/* For x <= 0, y = scale * alpha * (e^x - 1), so dy/dx = y + scale * alpha. */
__kernel void elu_gradient(__global const T *y, __global const T *dy, __global T *dx, const long n, const A alpha,
                           const A scale) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(y, i), d = LD(dy, i);
        ST(dx, i, v > (A)0 ? d * scale : d * (v + alpha * scale));
    }
}

/* log(1 + e^x) = max(x, 0) + log1p(e^-|x|): no overflow for large x, no cancellation for small. */
__kernel void softplus(__global const T *x, __global T *y, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(x, i);
        ST(y, i, fmax(v, (A)0) + log1p(exp(-fabs(v))));
    }
}

/* dy/dx = 1 - e^-y; -expm1(-y) keeps the precision for small y. */
__kernel void softplus_gradient(__global const T *y, __global const T *dy, __global T *dx, const long n) {
    const long i = get_global_id(0);
    if (i < n) ST(dx, i, LD(dy, i) * -expm1(-LD(y, i)));
}

/* PRelu: X viewed as (outer, C, inner); the slope of element i is slope[(i / inner) % C]. */
__kernel void prelu(__global const T *x, __global const T *slope, __global T *y, const long n, const long C,
                    const long inner) {
    const long i = get_global_id(0);
    if (i < n) {
        const A v = LD(x, i);
        ST(y, i, v > (A)0 ? v : v * LD(slope, (i / inner) % C));
    }
}

__kernel void prelu_gradient(__global const T *x, __global const T *dy, __global const T *slope, __global T *dx,
                             const long n, const long C, const long inner) {
    const long i = get_global_id(0);
    if (i < n) {
        const A d = LD(dy, i);
        ST(dx, i, LD(x, i) > (A)0 ? d : d * LD(slope, (i / inner) % C));
    }
}

/* dslope[c] = sum of x * dy over the elements of channel c where x <= 0; one work-item per channel. */
__kernel void prelu_slope_gradient(__global const T *x, __global const T *dy, __global T *ds, const long outer,
                                   const long C, const long inner) {
    const long c = get_global_id(0);
    if (c >= C) return;
    A acc = (A)0;
    for (long o = 0; o < outer; ++o) {
        const long base = (o * C + c) * inner;
        for (long j = 0; j < inner; ++j) {
            const A v = LD(x, base + j);
            if (v <= (A)0) acc += v * LD(dy, base + j);
        }
    }
    ST(ds, c, acc);
}

/* Softmax over rows of `cols` contiguous elements; subtracting the row max keeps exp finite. */
__kernel void softmax(__global const T *x, __global T *y, const long rows, const long cols) {
    const long r = get_global_id(0);
    if (r >= rows) return;
    const long base = r * cols;
    A m = LD(x, base);
    for (long j = 1; j < cols; ++j) m = fmax(m, LD(x, base + j));
    A s = (A)0;
    for (long j = 0; j < cols; ++j) s += exp(LD(x, base + j) - m);
    for (long j = 0; j < cols; ++j) ST(y, base + j, exp(LD(x, base + j) - m) / s);
}

/* dX = Y * (dY - sum(Y * dY)) per row. */
__kernel void softmax_gradient(__global const T *y, __global const T *dy, __global T *dx, const long rows,
                               const long cols) {
    const long r = get_global_id(0);
    if (r >= rows) return;
    const long base = r * cols;
    A s = (A)0;
    for (long j = 0; j < cols; ++j) s += LD(y, base + j) * LD(dy, base + j);
    for (long j = 0; j < cols; ++j) ST(dx, base + j, LD(y, base + j) * (LD(dy, base + j) - s));
}
