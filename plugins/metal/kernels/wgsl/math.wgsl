// Elementwise arithmetic (see kaffa_metal.kernels.math). T is the op's type, A its arithmetic
// type (f32 for f16): every result is computed in A and rounded once on store.
//
// Each section has its own bindings (an entry point's layout holds only what it uses). Ops that
// differ in one operation share an entry point specialised by the constant OP. Every pipeline of
// this file is built with OP, INTDIV (T is an integer), W (weight type) and O (output type).

// -- Add / Sub / Mul / Div with broadcasting --------------------------------------------------
// p = [n, ndim, dims..., strides of A..., strides of B...] (kaffa.launch.broadcast_geometry).
// OP: 0 add, 1 sub, 2 mul, 3 div.

@group(0) @binding(0) var<storage, read> bn_a: array<T>;
@group(0) @binding(1) var<storage, read> bn_b: array<T>;
@group(0) @binding(2) var<storage, read_write> bn_c: array<T>;
@group(0) @binding(3) var<storage, read> bn_p: array<u32>;

// Offset into operand k of output element i.
fn bn_offset(i: u32, k: u32) -> u32 {
    let nd = bn_p[1];
    if (nd == 1u) { return i * bn_p[3u + k]; }  // same shapes, scalars: no divisions
    var r = i;
    var off = 0u;
    for (var d = nd; d > 0u; d--) {
        let dim = bn_p[1u + d];
        off += (r % dim) * bn_p[1u + nd * (1u + k) + d];
        r /= dim;
    }
    return off;
}

fn divide(x: A, y: A) -> A {
    if (INTDIV) { return select(x / y, A(0), y == A(0)); }  // WGSL truncates; x / 0 is 0 as in numpy
    return x / y;
}

@compute @workgroup_size(WG)
fn binary(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= bn_p[0]) { return; }
    let x = A(bn_a[bn_offset(i, 0u)]);
    let y = A(bn_b[bn_offset(i, 1u)]);
    var r: A;
    switch (OP) {
        case 0: { r = x + y; }
        case 1: { r = x - y; }
        case 2: { r = x * y; }
        default: { r = divide(x, y); }
    }
    bn_c[i] = T(r);
}

// -- Sum / Max / Min / Mean over up to 4 inputs per launch -------------------------------------
// r = combine(acc[i] if use_acc, x0[i], ..., x{m-1}[i]); the last launch stores T(r / div) into
// y, earlier ones r into acc (A, so f16 rounds once). Unused x bindings repeat x0; acc may be y
// when unused. p = [n, m, use_acc, last, div]. OP: 0 sum, 1 max, 2 min.

@group(0) @binding(0) var<storage, read_write> vn_acc: array<A>;
@group(0) @binding(1) var<storage, read> vn_x0: array<T>;
@group(0) @binding(2) var<storage, read> vn_x1: array<T>;
@group(0) @binding(3) var<storage, read> vn_x2: array<T>;
@group(0) @binding(4) var<storage, read> vn_x3: array<T>;
@group(0) @binding(5) var<storage, read_write> vn_y: array<T>;
@group(0) @binding(6) var<storage, read> vn_p: array<u32>;

fn combine(r: A, v: A) -> A {
    switch (OP) {
        case 0: { return r + v; }
        case 1: { return max(r, v); }
        default: { return min(r, v); }
    }
}

@compute @workgroup_size(WG)
fn variadic(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= vn_p[0]) { return; }
    let m = vn_p[1];
    var r = A(vn_x0[i]);
    if (vn_p[2] != 0u) { r = combine(vn_acc[i], r); }
    if (m > 1u) { r = combine(r, A(vn_x1[i])); }
    if (m > 2u) { r = combine(r, A(vn_x2[i])); }
    if (m > 3u) { r = combine(r, A(vn_x3[i])); }
    if (vn_p[3] != 0u) {
        vn_y[i] = T(r / A(bitcast<f32>(vn_p[4])));
    } else {
        vn_acc[i] = r;
    }
}

// -- WeightedSum: r = acc + x0 * w0 + x1 * w1 over up to 2 pairs per launch -----------------------
// Weights are one-element W buffers (Caffe2 keeps f32 weights for f16 X). p = [n, m, use_acc, last].

@group(0) @binding(0) var<storage, read_write> ws_acc: array<A>;
@group(0) @binding(1) var<storage, read> ws_x0: array<T>;
@group(0) @binding(2) var<storage, read> ws_w0: array<W>;
@group(0) @binding(3) var<storage, read> ws_x1: array<T>;
@group(0) @binding(4) var<storage, read> ws_w1: array<W>;
@group(0) @binding(5) var<storage, read_write> ws_y: array<T>;
@group(0) @binding(6) var<storage, read> ws_p: array<u32>;

@compute @workgroup_size(WG)
fn weighted_sum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= ws_p[0]) { return; }
    var r = A(ws_x0[i]) * A(ws_w0[0]);
    if (ws_p[2] != 0u) { r = ws_acc[i] + r; }
    if (ws_p[1] > 1u) { r += A(ws_x1[i]) * A(ws_w1[0]); }
    if (ws_p[3] != 0u) {
        ws_y[i] = T(r);
    } else {
        ws_acc[i] = r;
    }
}

// dX = dY * w (WeightedSumGradient), w one W element. p = [n].
@group(0) @binding(0) var<storage, read> sb_dy: array<T>;
@group(0) @binding(1) var<storage, read> sb_w: array<W>;
@group(0) @binding(2) var<storage, read_write> sb_dx: array<T>;
@group(0) @binding(3) var<storage, read> sb_p: array<u32>;

@compute @workgroup_size(WG)
fn scale_by(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= sb_p[0]) { return; }
    sb_dx[i] = T(A(sb_dy[i]) * A(sb_w[0]));
}

// dX = dY / div (MeanGradient). p = [n, div].
@group(0) @binding(0) var<storage, read> dv_dy: array<T>;
@group(0) @binding(1) var<storage, read_write> dv_dx: array<T>;
@group(0) @binding(2) var<storage, read> dv_p: array<u32>;

@compute @workgroup_size(WG)
fn divide_by(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= dv_p[0]) { return; }
    dv_dx[i] = T(A(dv_dy[i]) / A(bitcast<f32>(dv_p[1])));
}

// MaxGradient / MinGradient: dX = X == Y ? dY : 0. p = [n].
@group(0) @binding(0) var<storage, read> se_x: array<T>;
@group(0) @binding(1) var<storage, read> se_y: array<T>;
@group(0) @binding(2) var<storage, read> se_dy: array<T>;
@group(0) @binding(3) var<storage, read_write> se_dx: array<T>;
@group(0) @binding(4) var<storage, read> se_p: array<u32>;

@compute @workgroup_size(WG)
fn select_equal(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= se_p[0]) { return; }
    se_dx[i] = select(T(0), se_dy[i], se_x[i] == se_y[i]);
}

// -- DivGradient at C's shape: dA = dC / B, dB = -dA * C, stored as O (T when no reduction
// follows, else f32, which the reduction rounds once). p = [n, ndim, dims..., strides of B...].

@group(0) @binding(0) var<storage, read> dg_dc: array<T>;
@group(0) @binding(1) var<storage, read> dg_b: array<T>;
@group(0) @binding(2) var<storage, read> dg_c: array<T>;
@group(0) @binding(3) var<storage, read_write> dg_da: array<O>;
@group(0) @binding(4) var<storage, read_write> dg_db: array<O>;
@group(0) @binding(5) var<storage, read> dg_p: array<u32>;

fn dg_offset(i: u32) -> u32 {  // bn_offset over dg_p, operand 0
    let nd = dg_p[1];
    if (nd == 1u) { return i * dg_p[3]; }
    var r = i;
    var off = 0u;
    for (var d = nd; d > 0u; d--) {
        let dim = dg_p[1u + d];
        off += (r % dim) * dg_p[1u + nd + d];
        r /= dim;
    }
    return off;
}

@compute @workgroup_size(WG)
fn div_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= dg_p[0]) { return; }
    let q = A(dg_dc[i]) / A(dg_b[dg_offset(i)]);
    dg_da[i] = O(q);
    dg_db[i] = O(-q * A(dg_c[i]));
}
