/* GEMM: C = alpha * op(A) · op(B) + beta * C0 (+ bias), batched, any M, N, K.
 *
 * Tiled in local memory with register blocking, shaped for CPU OpenCL (PoCL): a work-group is
 * ONE work-item and owns a TM x TN tile of C. The K dimension is walked TK at a time: the tile of
 * op(A) (TM x TK) and of op(B) (TK x TN) are copied into local memory as packed micro-panels
 * (BLIS-style; zero-filled past the matrix edge, so the inner loop has no edge case), then each
 * RM x RN register block of the tile (RM vectors of RN floats, loaded from and stored back to the
 * local accumulator tile) takes TK rank-1 updates: one vector load of B, RM broadcasts of A and
 * RM vector multiply-adds per k.
 *
 * Why not many work-items per group: PoCL runs a group's work-items as a loop, scalarises
 * explicit vector types to vectorise across work-items and keeps private arrays of
 * barrier-crossing work-items in memory; every variant of that measured 2-5 GFLOP/s here,
 * against ~30 for this one. Also tuned for PoCL: vectors move by pointer casts (vloadN/vstoreN
 * and min() are not inlined; a call in the inner loop spills the block), the RM loops are fully
 * unrolled (so the block stays in registers), and the multiply-add is written a * b + c (mad()
 * and fma() compile to slow library calls).
 *
 * Compile-time: TM, TN, TK (tile), RM, RN (block per work-item; RN in {1, 2, 4, 8, 16}).
 * Element (m, k) of op(A) is at A[a_off + m * sam + k * sak]; (k, n) of op(B) at
 * B[b_off + k * sbk + n * sbn]; (m, n) of C at C[c_off + m * scm + n * scn], and so for C0.
 * Transposes are just swapped strides. Batch b (get_global_id(2)) takes its offsets from
 * offs[4 b .. 4 b + 3] = (a_off, b_off, c_off, bias_off), which covers strided batches,
 * broadcast batches and per-group convolutions alike. bias (when not NULL) adds
 * bias[bias_off + m] (bias_rows) or bias[bias_off + n] to every element.
 * A, B, C0, bias and C are T buffers read and written through LD/ST; the sums are in A (float
 * for half).
 */

#define WX (TN / RN)
#define WY (TM / RM)
#define NWI (WX * WY)

#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#if RN == 1
#define AV A
#define VL(p) (*(p))
#define VS(v, p) (*(p) = (v))
#else
#define AV CAT(A, RN)
/* Aligned vector access by pointer cast: PoCL does not inline vloadN/vstoreN, and a call in the
 * inner loop stops it from keeping the block in registers. */
#define VL(p) (*(__local const AV *)(p))
#define VS(v, p) (*(__local AV *)(p) = (v))
#endif

/* One work-item per work-group (see the header): it owns a TM x TN tile of C. */
__kernel __attribute__((reqd_work_group_size(1, 1, 1)))
void gemm(__global const T *a, __global const T *b, __global const T *c0, __global const T *bias,
          __global T *c, __global const long *offs, const int M, const int N, const int K,
          const long sam, const long sak, const long sbk, const long sbn, const long scm,
          const long scn, const A alpha, const A beta, const int bias_rows) {
    /* Packed panels: as[(m / RM) * TK * RM + k * RM + m % RM], bs[(n / RN) * TK * RN + k * RN + n % RN];
     * the register blocks then read both sequentially. */
    __local A as[TM * TK] __attribute__((aligned(64)));
    __local A bs[TK * TN] __attribute__((aligned(64)));
    __local A cs[TM * TN] __attribute__((aligned(64))); /* the accumulators, blocked like the panels: [m / RM][n / RN][RM][RN] */
    const int m0 = get_group_id(1) * TM, n0 = get_group_id(0) * TN;
    const long bt = get_global_id(2);
    __global const T *ab = a + offs[4 * bt];
    __global const T *bb = b + offs[4 * bt + 1];
    const int mt = M - m0 < TM ? M - m0 : TM, nt = N - n0 < TN ? N - n0 : TN;

    /* Rows and columns rounded up to whole register blocks: the lanes past the matrix edge are
     * staged as zeros, so the blocks need no edge test, and nothing beyond them is touched. */
    const int mr = (mt + RM - 1) / RM * RM, nr = (nt + RN - 1) / RN * RN;
    for (int ib = 0; ib < mr / RM; ++ib)
        for (int e = 0; e < nr * RM; ++e) cs[ib * TN * RM + e] = (A)0;

    for (int k0 = 0; k0 < K; k0 += TK) {
        const int kt = K - k0 < TK ? K - k0 : TK;
        /* Stage the tiles, the contiguous direction innermost. */
        if (sak == 1) {
            for (int mm = 0; mm < mr; ++mm) {
                __global const T *src = ab + (long)(m0 + mm) * sam + k0;
                __local A *dst = as + (mm / RM) * TK * RM + mm % RM;
                if (mm < mt)
                    for (int kk = 0; kk < kt; ++kk) dst[kk * RM] = LD(src, kk);
                else
                    for (int kk = 0; kk < kt; ++kk) dst[kk * RM] = (A)0;
            }
        } else {
            for (int kk = 0; kk < kt; ++kk) {
                __global const T *src = ab + (long)(k0 + kk) * sak + (long)m0 * sam;
                for (int mm = 0; mm < mr; ++mm)
                    as[(mm / RM) * TK * RM + kk * RM + mm % RM] = mm < mt ? LD(src, mm * sam) : (A)0;
            }
        }
        if (sbn == 1) {
            for (int kk = 0; kk < kt; ++kk) {
                __global const T *src = bb + (long)(k0 + kk) * sbk + n0;
                for (int nn = 0; nn < nr; ++nn)
                    bs[(nn / RN) * TK * RN + kk * RN + nn % RN] = nn < nt ? LD(src, nn) : (A)0;
            }
        } else {
            for (int nn = 0; nn < nr; ++nn) {
                __global const T *src = bb + (long)(n0 + nn) * sbn + (long)k0 * sbk;
                __local A *dst = bs + (nn / RN) * TK * RN + nn % RN;
                if (nn < nt)
                    for (int kk = 0; kk < kt; ++kk) dst[kk * RN] = LD(src, kk * sbk);
                else
                    for (int kk = 0; kk < kt; ++kk) dst[kk * RN] = (A)0;
            }
        }
        /* The register blocks: RM rows of RN-wide vectors, kt rank-1 updates each. */
        for (int ib = 0; ib < mr / RM; ++ib) {
            __local const A *ap = as + ib * TK * RM;
            for (int jb = 0; jb < nr / RN; ++jb) {
                __local const A *bp = bs + jb * TK * RN;
                __local A *cp = cs + (ib * (TN / RN) + jb) * RM * RN;
                AV acc[RM];
#pragma unroll
                for (int i = 0; i < RM; ++i) acc[i] = VL(cp + i * RN);
                for (int kk = 0; kk < kt; ++kk) {
                    const AV bv = VL(bp + kk * RN);
#pragma unroll
                    for (int i = 0; i < RM; ++i) acc[i] += ap[kk * RM + i] * bv;
                }
#pragma unroll
                for (int i = 0; i < RM; ++i) VS(acc[i], cp + i * RN);
            }
        }
    }

    const long coff = offs[4 * bt + 2], boff = offs[4 * bt + 3];
    for (int mm = 0; mm < mt; ++mm) {
        const int gm = m0 + mm;
        for (int nn = 0; nn < nt; ++nn) {
            const int gn = n0 + nn;
            A v = alpha * cs[((mm / RM) * (TN / RN) + nn / RN) * RM * RN + (mm % RM) * RN + nn % RN];
            const long o = coff + (long)gm * scm + (long)gn * scn;
            if (c0) v += beta * LD(c0, o);
            if (bias) v += LD(bias, boff + (bias_rows ? gm : gn));
            ST(c, o, v);
        }
    }
}
