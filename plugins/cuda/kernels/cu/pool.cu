/* 2-D NCHW MaxPool and AveragePool, forward and gradient, over nc planes (other layouts, ranks and
 * dilations pool with CuPy strided slices, kaffa_cuda.kernels.pool). Windows hang over the
 * end by the effective end pad (kaffa.launch.pool); AveragePool divides by the cells of the window
 * inside [lo, hi) (window_count). No dilation (the host rejects it). */

extern "C" __global__ void max_pool(const T *x, T *y, i64 nc, int h, int w, int oh, int ow, int kh, int kw,
                                    int sh, int sw, int ph, int pw) {
    const i64 n = nc * oh * ow;
    KAFFA_LOOP(i, n) {
        const int ox = (int)(i % ow), oy = (int)(i / ow % oh);
        const i64 p = i / ((i64)oh * ow);
        const T *xp = x + p * h * w;
        A m = KAFFA_NEG_INF;
        for (int ky = 0; ky < kh; ++ky) {
            const int iy = oy * sh - ph + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int ix = ox * sw - pw + kx;
                if (ix < 0 || ix >= w) continue;
                m = fmax(m, LD(xp, (i64)iy * w + ix));
            }
        }
        ST(y, i, m);
    }
}

/* dX gathers from every window that covers it: every cell equal to the window's max takes dY (ties
 * share, as Caffe2 and the cpu kernel). */
extern "C" __global__ void max_pool_gradient(const T *x, const T *y, const T *dy, T *dx, i64 nc, int h, int w,
                                             int oh, int ow, int kh, int kw, int sh, int sw, int ph, int pw) {
    const i64 n = nc * h * w;
    KAFFA_LOOP(i, n) {
        const int ix = (int)(i % w), iy = (int)(i / w % h);
        const i64 p = i / ((i64)h * w);
        const A v = LD(x, i);
        A acc = 0;
        const int oy0 = max(0, (iy + ph - kh + sh) / sh), oy1 = min(oh - 1, (iy + ph) / sh);
        const int ox0 = max(0, (ix + pw - kw + sw) / sw), ox1 = min(ow - 1, (ix + pw) / sw);
        for (int oy = oy0; oy <= oy1; ++oy) {
            for (int ox = ox0; ox <= ox1; ++ox) {
                const i64 o = p * oh * ow + (i64)oy * ow + ox;
                if (LD(y, o) == v) acc += LD(dy, o);
            }
        }
        ST(dx, i, acc);
    }
}

/* The divisor of one window: its cells with lo <= index < hi per axis (kaffa.launch.pool.pool_fields
 * makes [lo, hi) the input, or the input with its declared pads when count_include_pad is set). */
__device__ inline int window_count(int oy, int ox, int kh, int kw, int sh, int sw, int ph, int pw, int ly,
                                   int hy, int lx, int hx) {
    const int y0 = oy * sh - ph, x0 = ox * sw - pw;
    const int ny = min(y0 + kh, hy) - max(y0, ly), nx = min(x0 + kw, hx) - max(x0, lx);
    return ny > 0 && nx > 0 ? ny * nx : 0;
}

extern "C" __global__ void avg_pool(const T *x, T *y, i64 nc, int h, int w, int oh, int ow, int kh, int kw,
                                    int sh, int sw, int ph, int pw, int ly, int hy, int lx, int hx) {
    const i64 n = nc * oh * ow;
    KAFFA_LOOP(i, n) {
        const int ox = (int)(i % ow), oy = (int)(i / ow % oh);
        const i64 p = i / ((i64)oh * ow);
        const T *xp = x + p * h * w;
        A s = 0;
        for (int ky = 0; ky < kh; ++ky) {
            const int iy = oy * sh - ph + ky;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int ix = ox * sw - pw + kx;
                if (ix >= 0 && ix < w) s += LD(xp, (i64)iy * w + ix);
            }
        }
        const int cnt = window_count(oy, ox, kh, kw, sh, sw, ph, pw, ly, hy, lx, hx);
        ST(y, i, cnt > 0 ? s / (A)cnt : (A)0);
    }
}

extern "C" __global__ void avg_pool_gradient(const T *dy, T *dx, i64 nc, int h, int w, int oh, int ow, int kh,
                                             int kw, int sh, int sw, int ph, int pw, int ly, int hy,
                                             int lx, int hx) {
    const i64 n = nc * h * w;
    KAFFA_LOOP(i, n) {
        const int ix = (int)(i % w), iy = (int)(i / w % h);
        const i64 p = i / ((i64)h * w);
        A acc = 0;
        const int oy0 = max(0, (iy + ph - kh + sh) / sh), oy1 = min(oh - 1, (iy + ph) / sh);
        const int ox0 = max(0, (ix + pw - kw + sw) / sw), ox1 = min(ow - 1, (ix + pw) / sw);
        for (int oy = oy0; oy <= oy1; ++oy)
            for (int ox = ox0; ox <= ox1; ++ox) {
                const int cnt = window_count(oy, ox, kh, kw, sh, sw, ph, pw, ly, hy, lx, hx);
                if (cnt > 0) acc += LD(dy, p * oh * ow + (i64)oy * ow + ox) / (A)cnt;
            }
        ST(dx, i, acc);
    }
}
