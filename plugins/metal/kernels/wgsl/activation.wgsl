// Activations and their gradients: one invocation per element (Softmax: a workgroup per row).
// Everything is computed in f32 and rounded once on store. Params p: [n, args...], floats as bits.

// -- accurate helpers (driver exp/log are only good to a few ulps, or absolutely near 1) ---------

// e^x - 1 without cancellation near 0 (Taylor below |x| < 0.5).
fn expm1_(x: f32) -> f32 {
    if (abs(x) >= 0.5) { return exp(x) - 1.0; }
    return x * (1.0 + x * (1.0 / 2.0 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0
        + x * (1.0 / 720.0 + x * (1.0 / 5040.0 + x * (1.0 / 40320.0 + x / 362880.0))))))));
}

// log(1 + z) for z in [0, 1], relative-accurate: 2 atanh(s), s = z / (2 + z) <= 1/3.
fn log1p_(z: f32) -> f32 {
    let s = z / (2.0 + z);
    let s2 = s * s;
    return 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0
        + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0 + s2 / 17.0))))))));
}

// -- maps: y = f(x) ----------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;  // [n, args...]

fn arg(k: u32) -> f32 { return bitcast<f32>(p[k]); }

@compute @workgroup_size(WG)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = T(max(A(x[i]), A(0)));
}

@compute @workgroup_size(WG)
fn sigmoid(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let v = f32(x[i]);
    let e = exp(-abs(v));  // never overflows
    y[i] = T(select(e, 1.0, v >= 0.0) / (1.0 + e));
}

@compute @workgroup_size(WG)
fn tanh_(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let v = f32(x[i]);
    // tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|)): exact near 0, no overflow for large |x|.
    let m = expm1_(-2.0 * abs(v));
    y[i] = T(sign(v) * (-m / (2.0 + m)));
}

@compute @workgroup_size(WG)
fn leaky_relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let v = f32(x[i]);
    y[i] = T(select(v * arg(1), v, v > 0.0));
}

// Elu and Selu: p = [n, alpha, scale].
@compute @workgroup_size(WG)
fn elu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let v = f32(x[i]);
    y[i] = T(select(arg(1) * expm1_(min(v, 0.0)), v, v > 0.0) * arg(2));
}

@compute @workgroup_size(WG)
fn softplus(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let v = f32(x[i]);
    y[i] = T(max(v, 0.0) + log1p_(exp(-abs(v))));  // log(1 + e^x) without overflow
}

// -- Softmax: a workgroup per row of the [rows, n] view, p = [rows, n] --------------------------

var<workgroup> partial: array<f32, WG>;

// The max (or the sum) of v over the workgroup; call from uniform control flow.
fn wg_reduce(v: f32, l: u32, take_max: bool) -> f32 {
    partial[l] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) {
            let o = partial[l + s];
            partial[l] = select(partial[l] + o, max(partial[l], o), take_max);
        }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();  // partial is reused by the next reduction
    return r;
}

@compute @workgroup_size(WG)
fn softmax(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
           @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p[0]) { return; }
    let n = p[1];
    let base = row * n;
    var m = -3.4e38;
    for (var j = l; j < n; j += WG) { m = max(m, f32(x[base + j])); }
    m = wg_reduce(m, l, true);
    var s = 0.0;
    for (var j = l; j < n; j += WG) { s += exp(f32(x[base + j]) - m); }
    s = wg_reduce(s, l, false);
    for (var j = l; j < n; j += WG) { y[base + j] = T(exp(f32(x[base + j]) - m) / s); }
}

// -- gradients: dx = f(y, dy), p = [n, args...] ------------------------------------------------

@group(0) @binding(0) var<storage, read> g_y: array<T>;
@group(0) @binding(1) var<storage, read> g_dy: array<T>;
@group(0) @binding(2) var<storage, read_write> g_dx: array<T>;
@group(0) @binding(3) var<storage, read> g_p: array<u32>;

fn g_arg(k: u32) -> f32 { return bitcast<f32>(g_p[k]); }

@compute @workgroup_size(WG)
fn relu_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    g_dx[i] = select(T(0), g_dy[i], A(g_y[i]) > A(0));
}

@compute @workgroup_size(WG)
fn sigmoid_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    let v = f32(g_y[i]);
    g_dx[i] = T(f32(g_dy[i]) * v * (1.0 - v));
}

@compute @workgroup_size(WG)
fn tanh_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    let v = f32(g_y[i]);
    g_dx[i] = T(f32(g_dy[i]) * (1.0 - v * v));
}

@compute @workgroup_size(WG)
fn leaky_relu_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    let d = f32(g_dy[i]);
    g_dx[i] = T(select(d * g_arg(1), d, f32(g_y[i]) > 0.0));
}

// For x <= 0, y = scale * alpha * (e^x - 1), so dy/dx = y + scale * alpha. p = [n, alpha, scale].
@compute @workgroup_size(WG)
fn elu_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    let v = f32(g_y[i]);
    let d = f32(g_dy[i]);
    g_dx[i] = T(select(d * (v + g_arg(1) * g_arg(2)), d * g_arg(2), v > 0.0));
}

@compute @workgroup_size(WG)
fn softplus_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    g_dx[i] = T(f32(g_dy[i]) * -expm1_(-f32(g_y[i])));  // 1 - e^-y cancels for small y
}

// dx = y * (dy - sum(y * dy)) per row: a workgroup per row, g_p = [rows, n].
@compute @workgroup_size(WG)
fn softmax_gradient(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
                    @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= g_p[0]) { return; }
    let n = g_p[1];
    let base = row * n;
    var s = 0.0;
    for (var j = l; j < n; j += WG) { s += f32(g_y[base + j]) * f32(g_dy[base + j]); }
    s = wg_reduce(s, l, false);
    for (var j = l; j < n; j += WG) {
        g_dx[base + j] = T(f32(g_y[base + j]) * (f32(g_dy[base + j]) - s));
    }
}

// -- PRelu: slope index (i / inner) % c (c = 1: one shared slope), p = [n, inner, c] ------------

@group(0) @binding(0) var<storage, read> pr_x: array<T>;
@group(0) @binding(1) var<storage, read> pr_slope: array<T>;
@group(0) @binding(2) var<storage, read_write> pr_y: array<T>;
@group(0) @binding(3) var<storage, read> pr_p: array<u32>;

@compute @workgroup_size(WG)
fn prelu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pr_p[0]) { return; }
    let v = f32(pr_x[i]);
    pr_y[i] = T(select(v * f32(pr_slope[(i / pr_p[1]) % pr_p[2]]), v, v > 0.0));
}

// dx, and the slope contributions x * dy (where x <= 0) in f32, for SumTo to sum per slope.
@group(0) @binding(0) var<storage, read> pg_x: array<T>;
@group(0) @binding(1) var<storage, read> pg_dy: array<T>;
@group(0) @binding(2) var<storage, read> pg_slope: array<T>;
@group(0) @binding(3) var<storage, read_write> pg_dx: array<T>;
@group(0) @binding(4) var<storage, read_write> pg_contrib: array<f32>;
@group(0) @binding(5) var<storage, read> pg_p: array<u32>;

@compute @workgroup_size(WG)
fn prelu_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pg_p[0]) { return; }
    let v = f32(pg_x[i]);
    let d = f32(pg_dy[i]);
    let neg = v <= 0.0;
    pg_dx[i] = T(select(d, d * f32(pg_slope[(i / pg_p[1]) % pg_p[2]]), neg));
    pg_contrib[i] = select(0.0, v * d, neg);
}
