/* Relu, Sigmoid, Tanh, Elu/Selu, LeakyRelu, Softplus and their gradients: y = f(x) and
 * dx = f'(y or x) * dy, elementwise over n items, computed in A. */

extern "C" __global__ void relu(const T *x, T *y, i64 n) {
    KAFFA_LOOP(i, n) { A v = LD(x, i); ST(y, i, v > (A)0 ? v : (A)0); }
}
extern "C" __global__ void relu_gradient(const T *y, const T *dy, T *dx, i64 n) {
    KAFFA_LOOP(i, n) { ST(dx, i, LD(y, i) > (A)0 ? LD(dy, i) : (A)0); }
}
extern "C" __global__ void sigmoid(const T *x, T *y, i64 n) {
    KAFFA_LOOP(i, n) {
        A v = LD(x, i);
        A e = exp(-fabs(v)); /* never overflows */
        ST(y, i, v >= (A)0 ? (A)1 / ((A)1 + e) : e / ((A)1 + e));
    }
}
extern "C" __global__ void sigmoid_gradient(const T *y, const T *dy, T *dx, i64 n) {
    KAFFA_LOOP(i, n) { A s = LD(y, i); ST(dx, i, LD(dy, i) * s * ((A)1 - s)); }
}
extern "C" __global__ void tanh_(const T *x, T *y, i64 n) {
    KAFFA_LOOP(i, n) { ST(y, i, tanh(LD(x, i))); }
}
extern "C" __global__ void tanh_gradient(const T *y, const T *dy, T *dx, i64 n) {
    KAFFA_LOOP(i, n) { A t = LD(y, i); ST(dx, i, LD(dy, i) * ((A)1 - t * t)); }
}
/* Elu (scale 1) and Selu: y = scale * (x > 0 ? x : alpha * (e^x - 1)). */
extern "C" __global__ void elu(const T *x, T *y, i64 n, A alpha, A scale) {
    KAFFA_LOOP(i, n) { A v = LD(x, i); ST(y, i, scale * (v > (A)0 ? v : alpha * expm1(fmin(v, (A)0)))); }
}
/* For x <= 0, dy/dx = scale * alpha * e^x = y + scale * alpha. */
extern "C" __global__ void elu_gradient(const T *y, const T *dy, T *dx, i64 n, A alpha, A scale) {
    KAFFA_LOOP(i, n) {
        A v = LD(y, i);
        ST(dx, i, v > (A)0 ? scale * LD(dy, i) : LD(dy, i) * (v + alpha * scale));
    }
}
extern "C" __global__ void leaky_relu(const T *x, T *y, i64 n, A alpha) {
    KAFFA_LOOP(i, n) { A v = LD(x, i); ST(y, i, v > (A)0 ? v : alpha * v); }
}
extern "C" __global__ void leaky_relu_gradient(const T *y, const T *dy, T *dx, i64 n, A alpha) {
    KAFFA_LOOP(i, n) { ST(dx, i, LD(y, i) > (A)0 ? LD(dy, i) : alpha * LD(dy, i)); }
}
extern "C" __global__ void softplus(const T *x, T *y, i64 n) {
    KAFFA_LOOP(i, n) { A v = LD(x, i); ST(y, i, fmax(v, (A)0) + log1p(exp(-fabs(v)))); }
}
extern "C" __global__ void softplus_gradient(const T *y, const T *dy, T *dx, i64 n) {
    KAFFA_LOOP(i, n) { ST(dx, i, -LD(dy, i) * expm1(-LD(y, i))); /* 1 - e^-y cancels for small y */ }
}
