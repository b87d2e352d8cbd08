/* Comparisons and logic -> bool (uchar 0/1), broadcasting through a geometry table g. */

#define OFF(g, k, i) ((g)[0] == 1 ? (i) * (g)[2 + (k)] : bcast_offset((g), (k), (i)))

#define COMPARE(name, expr)                                                                       \
    __kernel void name(__global const T *a, __global const T *b, __global uchar *c,               \
                       __global const int *g, const long n) {                                     \
        const long i = get_global_id(0);                                                          \
        if (i >= n) return;                                                                       \
        const A x = LD(a, OFF(g, 0, i)), y = LD(b, OFF(g, 1, i));                                 \
        c[i] = (expr) ? 1 : 0;                                                                    \
    }

COMPARE(eq, x == y)
COMPARE(lt, x < y)
COMPARE(gt, x > y)
COMPARE(and_, x != 0 && y != 0)
COMPARE(or_, x != 0 || y != 0)

__kernel void not_(__global const uchar *x, __global uchar *y, const long n) {
    const long i = get_global_id(0);
    if (i < n) y[i] = x[i] ? 0 : 1;
}
