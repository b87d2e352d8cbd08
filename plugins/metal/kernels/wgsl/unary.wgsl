// Unary math and its gradients: one invocation per element. Floats compute in f32 and round once
// on store. The file is also built for T = i32 (Abs, Negative, Clip, Cast), so float-only entries
// convert to f32 explicitly. U (always given) is Cast's output type. Params p: [n, args...].

fn special(bits: u32) -> f32 { return bitcast<f32>(bits); }  // inf / nan (a const would not build)
fn inf_() -> f32 { return special(0x7f800000u); }
fn nan_() -> f32 { return special(0x7fc00000u); }

// log(1 + z), relative-accurate for z in [-0.5, 1]: 2 atanh(s), s = z / (2 + z), |s| <= 1/3.
fn log1p_(z: f32) -> f32 {
    let s = z / (2.0 + z);
    let s2 = s * s;
    return 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0
        + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0 + s2 / 17.0))))))));
}

// The driver's log is only absolutely accurate near 1; x - 1 is exact in [0.5, 2].
fn log_(x: f32) -> f32 {
    if (x >= 0.5 && x <= 2.0) { return log1p_(x - 1.0); }
    if (x <= 0.0) { return select(nan_(), -inf_(), x == 0.0); }
    return log(x);
}

// x^e as numpy computes it: integer powers by repeated squaring (exact signs for x < 0, no
// exp2/log2 error), others through pow, which is undefined for x <= 0 in WGSL.
fn pow_(x: f32, e: f32) -> f32 {
    if (e == round(e) && abs(e) <= 64.0) {
        var b = x;
        var k = u32(abs(e));
        var r = 1.0;
        while (k != 0u) {
            if ((k & 1u) == 1u) { r *= b; }
            b *= b;
            k >>= 1u;
        }
        return select(r, 1.0 / r, e < 0.0);
    }
    if (x < 0.0) { return nan_(); }
    if (x == 0.0) { return select(inf_(), 0.0, e > 0.0); }
    return pow(x, e);
}

// -- maps: y = f(x) ----------------------------------------------------------------------------

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

@compute @workgroup_size(WG)
fn exp_(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = T(exp(f32(x[i])));
}

@compute @workgroup_size(WG)
fn log_entry(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = T(log_(f32(x[i])));
}

@compute @workgroup_size(WG)
fn sqrt_(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let v = f32(x[i]);
    y[i] = T(select(nan_(), sqrt(v), v >= 0.0));
}

@compute @workgroup_size(WG)
fn sqr(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let v = f32(x[i]);
    y[i] = T(v * v);
}

@compute @workgroup_size(WG)
fn abs_(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = abs(x[i]);
}

@compute @workgroup_size(WG)
fn negative(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = -x[i];
}

// p = [n, scale]
@compute @workgroup_size(WG)
fn scale(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = T(f32(x[i]) * bitcast<f32>(p[1]));
}

// p = [n, lo, hi] as A's bits; min after max, as Caffe2: with lo > hi everything becomes hi.
@compute @workgroup_size(WG)
fn clip(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = T(min(max(A(x[i]), bitcast<A>(p[1])), bitcast<A>(p[2])));
}

// p = [n, exponent]
@compute @workgroup_size(WG)
fn pow_scalar(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = T(pow_(f32(x[i]), bitcast<f32>(p[1])));
}

// Cast: WGSL's conversions truncate floats toward zero for integers, as C (and numpy) do.
@group(0) @binding(1) var<storage, read_write> c_y: array<U>;

@compute @workgroup_size(WG)
fn cast_(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    c_y[i] = U(x[i]);
}

// -- gradients: dx = f(x or y, dy), p = [n, args...] -------------------------------------------

@group(0) @binding(0) var<storage, read> g_a: array<T>;
@group(0) @binding(1) var<storage, read> g_dy: array<T>;
@group(0) @binding(2) var<storage, read_write> g_dx: array<T>;
@group(0) @binding(3) var<storage, read> g_p: array<u32>;

@compute @workgroup_size(WG)
fn abs_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    g_dx[i] = T(sign(f32(g_a[i])) * f32(g_dy[i]));
}

// g_p = [n, lo, hi] (f32 bits): dY passes where lo < y < hi.
@compute @workgroup_size(WG)
fn clip_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    let v = f32(g_a[i]);
    let inside = v > bitcast<f32>(g_p[1]) && v < bitcast<f32>(g_p[2]);
    g_dx[i] = select(T(0), g_dy[i], inside);
}

// -- Pow with a broadcast exponent tensor -------------------------------------------------------
// Params: [n, ndim, dims..., strides of X..., strides of E...] (kaffa.launch.broadcast_geometry).

@group(0) @binding(0) var<storage, read> pt_x: array<T>;
@group(0) @binding(1) var<storage, read> pt_e: array<T>;
@group(0) @binding(2) var<storage, read_write> pt_y: array<T>;
@group(0) @binding(3) var<storage, read> pt_p: array<u32>;

// Offset into operand k (0: X, 1: E) of output element i.
fn pt_offset(i: u32, k: u32) -> u32 {
    let nd = pt_p[1];
    var r = i;
    var off = 0u;
    for (var d = nd; d > 0u; d--) {
        let dim = pt_p[1u + d];
        off += (r % dim) * pt_p[1u + nd * (1u + k) + d];
        r /= dim;
    }
    return off;
}

@compute @workgroup_size(WG)
fn pow_tensor(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pt_p[0]) { return; }
    pt_y[i] = T(pow_(f32(pt_x[pt_offset(i, 0u)]), f32(pt_e[pt_offset(i, 1u)])));
}

// PowGradient, on the broadcast shape in f32 (SumTo then sums to X's and E's shapes):
// dx = e x^(e-1) dy, de = y log(x) dy. Same params as pow_tensor.
@group(0) @binding(0) var<storage, read> pg_x: array<T>;
@group(0) @binding(1) var<storage, read> pg_e: array<T>;
@group(0) @binding(2) var<storage, read> pg_y: array<T>;
@group(0) @binding(3) var<storage, read> pg_dy: array<T>;
@group(0) @binding(4) var<storage, read_write> pg_dx: array<f32>;
@group(0) @binding(5) var<storage, read_write> pg_de: array<f32>;
@group(0) @binding(6) var<storage, read> pg_p: array<u32>;

fn pg_offset(i: u32, k: u32) -> u32 {  // pt_offset over pg_p
    let nd = pg_p[1];
    var r = i;
    var off = 0u;
    for (var d = nd; d > 0u; d--) {
        let dim = pg_p[1u + d];
        off += (r % dim) * pg_p[1u + nd * (1u + k) + d];
        r /= dim;
    }
    return off;
}

@compute @workgroup_size(WG)
fn pow_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= pg_p[0]) { return; }
    let v = f32(pg_x[pg_offset(i, 0u)]);
    let e = f32(pg_e[pg_offset(i, 1u)]);
    let d = f32(pg_dy[i]);
    pg_dx[i] = e * pow_(v, e - 1.0) * d;
    pg_de[i] = f32(pg_y[i]) * log_(v) * d;
}
