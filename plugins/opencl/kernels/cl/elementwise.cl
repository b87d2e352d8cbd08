/* Shared elementwise helpers (see kaffa_opencl.kernels.elementwise). */

/* dst[i] = sum over j < red of src at flat index i * red + j of the permuted view described by g
 * (kaffa.launch.transpose_geometry): sums a broadcast-shaped W buffer down to an input's shape. */
__kernel void sum_to(__global const int *g, __global const W *src, __global T *dst, const long kept,
                     const long red) {
    const long i = get_global_id(0);
    if (i >= kept) return;
    A acc = (A)0;
    for (long j = 0; j < red; ++j) acc += (A)src[bcast_offset(g, 0, i * red + j)];
    ST(dst, i, acc);
}
