/* im2col and col2im for 2-D NCHW convolution (one sample, one group at a time; the GEMMs around
 * them go through cuBLAS). cols is [C*KH*KW, OH*OW]; padding reads as zero. */

extern "C" __global__ void im2col(const T *x, T *cols, int c, int h, int w, int kh, int kw, int sh, int sw,
                                  int ph, int pw, int dh, int dw, int oh, int ow) {
    const i64 n = (i64)c * kh * kw * oh * ow;
    KAFFA_LOOP(i, n) {
        const int ox = (int)(i % ow), oy = (int)(i / ow % oh);
        const i64 row = i / ((i64)oh * ow);
        const int kx = (int)(row % kw), ky = (int)(row / kw % kh), ch = (int)(row / ((i64)kw * kh));
        const int iy = oy * sh - ph + ky * dh, ix = ox * sw - pw + kx * dw;
        A v = 0;
        if (iy >= 0 && iy < h && ix >= 0 && ix < w) v = LD(x, ((i64)ch * h + iy) * w + ix);
        ST(cols, i, v);
    }
}

/* The adjoint of im2col: each input pixel gathers every column entry that read it (no atomics). */
extern "C" __global__ void col2im(const T *cols, T *x, int c, int h, int w, int kh, int kw, int sh, int sw,
                                  int ph, int pw, int dh, int dw, int oh, int ow) {
    const i64 n = (i64)c * h * w;
    KAFFA_LOOP(i, n) {
        const int ix = (int)(i % w), iy = (int)(i / w % h), ch = (int)(i / ((i64)w * h));
        A acc = 0;
        for (int ky = 0; ky < kh; ++ky) {
            const int ty = iy + ph - ky * dh;
            if (ty < 0 || ty % sh) continue;
            const int oy = ty / sh;
            if (oy >= oh) continue;
            for (int kx = 0; kx < kw; ++kx) {
                const int tx = ix + pw - kx * dw;
                if (tx < 0 || tx % sw) continue;
                const int ox = tx / sw;
                if (ox >= ow) continue;
                const i64 row = ((i64)ch * kh + ky) * kw + kx;
                acc += LD(cols, row * oh * ow + (i64)oy * ow + ox);
            }
        }
        ST(x, i, acc);
    }
}
