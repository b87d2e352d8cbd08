/* Activations and their gradients: one work-item per element. */

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
