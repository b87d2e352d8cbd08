/* MaxPool, AveragePool, PadImage and their gradients over any number of spatial axes.
 * X is viewed as [outer, *S, inner]: NCHW has outer = N * C, inner = 1; NHWC outer = N, inner = C.
 * Gradients gather (one work-item per dX element), so no atomics are needed. */

#define MAXSP 8

/* Pool geometry g = [nsp, inner, in[nsp], out[nsp], kernel, stride, dilation, pad_begin, lo, hi]:
 * the divisor counts the taps whose input index lies in [lo, hi). */
#define G_IN(d) g[2 + (d)]
#define G_OUT(d) g[2 + nsp + (d)]
#define G_K(d) g[2 + 2 * nsp + (d)]
#define G_S(d) g[2 + 3 * nsp + (d)]
#define G_D(d) g[2 + 4 * nsp + (d)]
#define G_P(d) g[2 + 5 * nsp + (d)]
#define G_LO(d) g[2 + 6 * nsp + (d)]
#define G_HI(d) g[2 + 7 * nsp + (d)]

/* How many taps of window o on axis d the divisor counts (the divisor is their product). */
inline int pool_count(__global const int *g, const int nsp, const int d, const int o) {
    int n = 0;
    for (int t = 0; t < G_K(d); ++t) {
        const int i = o * G_S(d) - G_P(d) + t * G_D(d);
        n += (i >= G_LO(d) && i < G_HI(d));
    }
    return n;
}

/* One work-item per output element; taps in row-major order, as the cpu kernel combines them. */
__kernel void pool(__global const T *x, __global T *y, __global const int *g, const long n,
                   const int average) {
    const long gid = get_global_id(0);
    if (gid >= n) return;
    const int nsp = g[0], inner = g[1];
    long r = gid / inner;
    const int c = (int)(gid - r * inner);
    int o[MAXSP];
    int taps = 1;
    long in_size = 1;
    for (int d = nsp - 1; d >= 0; --d) {
        const long q = r / G_OUT(d);
        o[d] = (int)(r - q * G_OUT(d));
        r = q;
        taps *= G_K(d);
        in_size *= G_IN(d);
    }
    const long base = r * in_size;
    A acc = average ? (A)0 : (A)(-INFINITY); /* padding never wins a max */
    for (int t = 0; t < taps; ++t) {
        int tt = t;
        long off = 0, mult = 1;
        bool inside = true;
        for (int d = nsp - 1; d >= 0; --d) {
            const int k = tt % G_K(d);
            tt /= G_K(d);
            const int i = o[d] * G_S(d) - G_P(d) + k * G_D(d);
            inside &= (i >= 0 && i < G_IN(d));
            off += (long)i * mult;
            mult *= G_IN(d);
        }
        if (!inside) continue;
        const A v = LD(x, (base + off) * inner + c);
        if (average) acc += v;
        else if (isnan(v) || v > acc) acc = v; /* nan propagates, as numpy's maximum */
    }
    if (average) {
        int div = 1;
        for (int d = 0; d < nsp; ++d) div *= pool_count(g, nsp, d, o[d]);
        acc /= (A)div;
    }
    ST(y, gid, acc);
}

/* One work-item per input cell: every (window, tap) pair that lands on the cell adds its share
 * (max: the window's dY when the cell equals the window's max, ties included). */
__kernel void pool_gradient(__global const T *x, __global const T *y, __global const T *dy,
                            __global T *dx, __global const int *g, const long n, const int average) {
    const long gid = get_global_id(0);
    if (gid >= n) return;
    const int nsp = g[0], inner = g[1];
    long r = gid / inner;
    const int c = (int)(gid - r * inner);
    int xi[MAXSP];
    int taps = 1;
    long out_size = 1;
    for (int d = nsp - 1; d >= 0; --d) {
        const long q = r / G_IN(d);
        xi[d] = (int)(r - q * G_IN(d));
        r = q;
        taps *= G_K(d);
        out_size *= G_OUT(d);
    }
    const long base = r * out_size;
    const A xv = LD(x, gid);
    A acc = 0;
    for (int t = 0; t < taps; ++t) {
        int tt = t, div = 1;
        long off = 0, mult = 1;
        bool hit = true;
        for (int d = nsp - 1; d >= 0 && hit; --d) {
            const int k = tt % G_K(d);
            tt /= G_K(d);
            const int num = xi[d] + G_P(d) - k * G_D(d); /* window start, times the stride */
            const int od = num / G_S(d);
            hit = num >= 0 && od * G_S(d) == num && od < G_OUT(d);
            off += (long)od * mult;
            mult *= G_OUT(d);
            if (average && hit) div *= pool_count(g, nsp, d, od);
        }
        if (!hit) continue;
        const long j = (base + off) * inner + c;
        if (average) acc += LD(dy, j) / (A)div;
        else if (xv == LD(y, j)) acc += LD(dy, j);
    }
    ST(dx, gid, acc);
}

/* PadImage geometry p = [nsp, inner, in[nsp], out[nsp], pad_begin[nsp]]. mode: 0 constant,
 * 1 reflect (mirror without the edge), 2 edge. */
#define P_IN(d) p[2 + (d)]
#define P_OUT(d) p[2 + nsp + (d)]
#define P_B(d) p[2 + 2 * nsp + (d)]

__kernel void pad_image(__global const T *x, __global T *y, __global const int *p, const long n,
                        const int mode, const A value) {
    const long gid = get_global_id(0);
    if (gid >= n) return;
    const int nsp = p[0], inner = p[1];
    long r = gid / inner;
    const int c = (int)(gid - r * inner);
    long off = 0, mult = 1;
    bool inside = true;
    for (int d = nsp - 1; d >= 0; --d) {
        const long q = r / P_OUT(d);
        const int size = P_IN(d);
        int i = (int)(r - q * P_OUT(d)) - P_B(d);
        r = q;
        if (mode == 1) {
            i = i < 0 ? -i : i;
            i = i >= size ? 2 * (size - 1) - i : i;
        } else if (mode == 2) {
            i = clamp(i, 0, size - 1);
        }
        inside &= (i >= 0 && i < size);
        off += (long)i * mult;
        mult *= size;
    }
    ST(y, gid, inside ? LD(x, (r * mult + off) * inner + c) : value);
}

/* One work-item per dX cell. Per axis, the dY cells that copied this cell: itself, plus for
 * reflect its mirror images in either pad, for edge (a border cell) the whole pad range. */
__kernel void pad_image_gradient(__global const T *dy, __global T *dx, __global const int *p,
                                 const long n, const int mode) {
    const long gid = get_global_id(0);
    if (gid >= n) return;
    const int nsp = p[0], inner = p[1];
    long r = gid / inner;
    const int c = (int)(gid - r * inner);
    int lo[MAXSP], cnt[MAXSP], alt[MAXSP][2];
    long combos = 1, out_size = 1;
    for (int d = nsp - 1; d >= 0; --d) {
        const long q = r / P_IN(d);
        const int i = (int)(r - q * P_IN(d)), size = P_IN(d), b = P_B(d), e = P_OUT(d) - size - b;
        r = q;
        lo[d] = b + i;
        cnt[d] = 1;
        if (mode == 2) { /* a contiguous range */
            if (i == 0) lo[d] = 0;
            cnt[d] = (i == size - 1 ? P_OUT(d) - 1 : b + i) - lo[d] + 1;
        } else if (mode == 1) { /* pad cell b - j copies j; end pad cell b + size - 1 + j copies size - 1 - j */
            if (i >= 1 && i <= b) alt[d][cnt[d]++ - 1] = b - i;
            if (i >= size - 1 - e && i <= size - 2) alt[d][cnt[d]++ - 1] = b + 2 * (size - 1) - i;
        }
        combos *= cnt[d];
        out_size *= P_OUT(d);
    }
    A acc = 0;
    for (long t = 0; t < combos; ++t) {
        long tt = t, off = 0, mult = 1;
        for (int d = nsp - 1; d >= 0; --d) {
            const int j = (int)(tt % cnt[d]);
            tt /= cnt[d];
            const int o = mode == 1 && j > 0 ? alt[d][j - 1] : lo[d] + j;
            off += (long)o * mult;
            mult *= P_OUT(d);
        }
        acc += LD(dy, (r * out_size + off) * inner + c);
    }
    ST(dx, gid, acc);
}
