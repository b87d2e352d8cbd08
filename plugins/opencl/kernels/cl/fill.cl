/* Fillers. value_fill and copy are built with RAW and move raw bits (T = an unsigned type of the
 * element's size). The random fillers, built for the output's T, draw kaffa_uniform01(seed,
 * stream, index): a sample depends only on the op's seed, the run number (stream) and its
 * position, never on the launch geometry. */

#ifdef RAW
__kernel void value_fill(__global T *y, const T value, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = value;
}

__kernel void copy(__global const T *x, __global T *y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = x[i];
}

#else
/* lo + (hi - lo) * u, clamped to [cmin, cmax]: the host passes bounds already rounded to the
 * output dtype, so storing cannot round a sample out of them. */
__kernel void uniform_fill(__global T *y, const uint seed, const uint stream, const A lo, const A hi,
                           const A cmin, const A cmax, const long n) {
    const long i = get_global_id(0);
    if (i < n) {
        const A u = (A)kaffa_uniform01(seed, stream, (uint)i);
        ST(y, i, clamp(lo + (hi - lo) * u, cmin, cmax));
    }
}

#ifdef KAFFA_FP64
#define TWO_PI 6.283185307179586
#else
#define TWO_PI 6.2831853f /* an unsuffixed literal is double, which fp32-only devices may reject */
#endif

/* Box-Muller: work-item p turns uniforms 2p, 2p + 1 into normal samples 2p and 2p + 1. */
__kernel void gaussian_fill(__global T *y, const uint seed, const uint stream, const A mean,
                            const A stdev, const long n) {
    const long p = get_global_id(0), i = 2 * p;
    if (i < n) {
        const A u1 = (A)kaffa_uniform01(seed, stream, (uint)i);
        const A u2 = (A)kaffa_uniform01(seed, stream, (uint)i + 1);
        const A r = sqrt((A)-2 * log(u1));
        const A t = (A)TWO_PI * u2;
        ST(y, i, mean + stdev * r * cos(t));
        if (i + 1 < n) ST(y, i + 1, mean + stdev * r * sin(t));
    }
}
#endif
