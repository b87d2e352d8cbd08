/* Iter, LearningRate and the optimizer updates. The host defines
 *   L, L_HALF  the type of the one-element lr input (any float type, not necessarily T)
 *   R          double where the device has it, else float: the scalar schedule math (Caffe2 and
 *              the cpu kernels work in double; beta^t in float drifts for large t)
 *   UPDATES, POLICY, NESTEROV, WANT_GRAD  per-op switches
 * The updates are elementwise in A and write new buffers (the planner binds them in place). */

#if L_HALF
#define LDL(p, i) vload_half((i), (p))
#else
#define LDL(p, i) ((A)(p)[(i)])
#endif

/* Saturates instead of overflowing (the cpu kernel raises; a device kernel cannot). */
__kernel void iter_next(__global const long *it, __global long *out) {
    const long v = it[0];
    out[0] = v < LONG_MAX ? v + 1 : v;
}

/* -- LearningRate: POLICY 0 fixed, 1 step, 2 exp, 3 inv, 4 poly, 5 linearWarmup,
 *    6 constantWarmup, 7 alter, 8 hill (Caffe2's learning_rate_functors.h) -------------------- */

inline R linear_warmup(long it, R start, long num_iter) {
    return it >= num_iter ? (R)1 : start + (1 - start) * (R)it / (R)num_iter;
}

inline R inv_decay(long it, R gamma, R power) { return pow(1 + gamma * (R)it, -power); }

__kernel void learning_rate(__global const long *iter, __global float *lr, const R base, const R gamma,
                            const R power, const R start, const R multiplier, const R end,
                            const long stepsize, const long max_iter, const long num_iter,
                            const long active, const long inactive, const int active_first) {
    const long it = iter[0];
    R m = 1;
#if POLICY == 1
    m = pow(gamma, (R)(it / stepsize));
#elif POLICY == 2
    m = pow(gamma, (R)it);
#elif POLICY == 3
    m = inv_decay(it, gamma, power);
#elif POLICY == 4
    m = pow(fmax((R)0, 1 - (R)it / (R)max_iter), power);
#elif POLICY == 5
    m = linear_warmup(it, start, num_iter);
#elif POLICY == 6
    m = it < num_iter ? multiplier : (R)1;
#elif POLICY == 7
    const int in_lead = it % (active + inactive) < (active_first ? active : inactive);
    m = in_lead == active_first ? (R)1 : (R)0;
#elif POLICY == 8
    m = it < num_iter ? linear_warmup(it, start, num_iter) : fmax(end, inv_decay(it - num_iter, gamma, power));
#endif
    lr[0] = it < 0 ? NAN : (float)(base * m); /* a negative count is invalid (the cpu kernel raises) */
}

/* -- optimizers (only in builds for a float T: Iter and LearningRate compile this file with
 *    T = long or float and no UPDATES) ------------------------------------------------------ */
#if UPDATES

__kernel void momentum_sgd(__global const T *g, __global const T *m, __global const L *lr,
                           __global const T *p, __global T *g_out, __global T *m_out, __global T *p_out,
                           const A momentum, const A opm, const long n) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const A mi = LD(m, i);
    const A mn = LDL(lr, 0) * LD(g, i) + momentum * mi;
#if NESTEROV
    const A gn = opm * mn - momentum * mi; /* opm = 1 + momentum, rounded on the host */
#else
    const A gn = mn;
#endif
    ST(g_out, i, gn);
    ST(m_out, i, mn);
    ST(p_out, i, LD(p, i) - gn);
}

/* c = sqrt(1 - beta2^t) / (1 - beta1^t), t = iter + 1: once, not per element. */
__kernel void adam_correction(__global const long *iter, __global R *c, const R beta1, const R beta2) {
    const R t = (R)(iter[0] + 1);
    c[0] = sqrt(1 - pow(beta2, t)) / (1 - pow(beta1, t));
}

/* omb1, omb2: 1 - beta1, 1 - beta2 rounded once on the host, as the cpu kernel does. */
__kernel void adam(__global const T *p, __global const T *m1, __global const T *m2, __global const T *g,
                   __global const L *lr, __global const R *c, __global T *p_out, __global T *m1_out,
                   __global T *m2_out, __global T *g_out, const A beta1, const A omb1, const A beta2,
                   const A omb2, const A eps, const long n) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const A gi = LD(g, i);
    const A a1 = beta1 * LD(m1, i) + omb1 * gi;
    const A a2 = beta2 * LD(m2, i) + omb2 * gi * gi;
    const A step = (A)c[0] * a1 / (sqrt(a2) + eps);
    ST(p_out, i, LD(p, i) + LDL(lr, 0) * step);
    ST(m1_out, i, a1);
    ST(m2_out, i, a2);
#if WANT_GRAD
    ST(g_out, i, step);
#endif
}

__kernel void adagrad(__global const T *p, __global const T *m, __global const T *g, __global const L *lr,
                      __global T *p_out, __global T *m_out, const A eps, const A decay, const long n) {
    const long i = get_global_id(0);
    if (i >= n) return;
    const A gi = LD(g, i);
    const A h = decay * LD(m, i) + gi * gi;
    ST(p_out, i, LD(p, i) + LDL(lr, 0) * gi / (sqrt(h) + eps));
    ST(m_out, i, h);
}
#endif
