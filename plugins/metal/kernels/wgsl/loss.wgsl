// Losses and metrics. X is viewed as [n, d] rows of a C-contiguous buffer; everything computes in
// f32 and rounds once on store. Besides T/A the prelude defines (every build, used or not):
//   I           the type of class-index labels (i32: int64 cannot live on metal)
//   TL          SoftmaxWithLoss's label type: I, or T with LABEL_PROB
//   G           the type of a loss-gradient scalar (a float32 seed may drive a float16 net)
//   LABEL_PROB, WEIGHTED, MODE  per-op switches
// Row reductions put `lanes` invocations (a power of two <= WG, chosen by the host) on each row,
// WG / lanes rows per workgroup. A label outside [0, d) gives NaN: the host does not read labels
// back to validate them, and NaN is better than a clamped out-of-bounds read.

const THRESHOLD: f32 = 1e-20;  // Caffe2's kLOG_THRESHOLD

var<private> nan_bits: u32 = 0x7fc00000u;  // a runtime value: WGSL rejects NaN constants
fn nan() -> f32 { return bitcast<f32>(nan_bits); }

var<workgroup> partial: array<f32, WG>;

// The max (or sum) of v over each run of `lanes` invocations, returned to all of them; call from
// uniform control flow. lanes = WG: the whole workgroup.
fn seg_reduce(v: f32, l: u32, lanes: u32, take_max: bool) -> f32 {
    partial[l] = v;
    workgroupBarrier();
    for (var s = lanes / 2u; s > 0u; s >>= 1u) {
        if (l % lanes < s) {
            let o = partial[l + s];
            partial[l] = select(partial[l] + o, max(partial[l], o), take_max);
        }
        workgroupBarrier();
    }
    let r = partial[l - l % lanes];
    workgroupBarrier();  // partial is reused by the next reduction
    return r;
}

struct Seg { row: u32, lane: u32 }

fn seg(wid: vec3<u32>, nwg: vec3<u32>, l: u32, lanes: u32) -> Seg {
    return Seg((wid.x + wid.y * nwg.x) * (WG / lanes) + l / lanes, l % lanes);
}

// log(1 + z) for z in [0, 1], relative-accurate: 2 atanh(s), s = z / (2 + z) <= 1/3.
fn log1p_(z: f32) -> f32 {
    let s = z / (2.0 + z);
    let s2 = s * s;
    return 2.0 * s * (1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0
        + s2 * (1.0 / 11.0 + s2 * (1.0 / 13.0 + s2 * (1.0 / 15.0 + s2 / 17.0))))))));
}

// -- SoftmaxWithLoss: rows (P and f32 row losses), then one workgroup for the weighted mean -----

@group(0) @binding(0) var<storage, read> sl_x: array<T>;
@group(0) @binding(1) var<storage, read> sl_t: array<TL>;
@group(0) @binding(2) var<storage, read_write> sl_p: array<T>;
@group(0) @binding(3) var<storage, read_write> sl_loss: array<f32>;
@group(0) @binding(4) var<storage, read> sl_q: array<u32>;  // [n, d, lanes]

@compute @workgroup_size(WG)
fn softmax_loss_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = sl_q[0];
    let d = sl_q[1];
    let lanes = sl_q[2];
    let s = seg(wid, nwg, l, lanes);
    let dd = select(0u, d, s.row < n);
    let o = s.row * d;
    var m = -3.4e38;
    for (var j = s.lane; j < dd; j += lanes) { m = max(m, f32(sl_x[o + j])); }
    m = seg_reduce(m, l, lanes, true);
    var e = 0.0;
    for (var j = s.lane; j < dd; j += lanes) { e += exp(f32(sl_x[o + j]) - m); }
    let ls = log(seg_reduce(e, l, lanes, false));
    var loss = 0.0;
    for (var j = s.lane; j < dd; j += lanes) {
        let z = f32(sl_x[o + j]) - m - ls;  // log P: subtracting m first keeps large logits exact
        sl_p[o + j] = T(exp(z));
        if (LABEL_PROB) { loss -= f32(sl_t[o + j]) * z; }
    }
    if (LABEL_PROB) { loss = seg_reduce(loss, l, lanes, false); }
    if (s.row >= n || s.lane != 0u) { return; }
    if (!LABEL_PROB) {
        let lab = i32(sl_t[s.row]);
        if (lab >= 0 && u32(lab) < d) { loss = ls - (f32(sl_x[o + u32(lab)]) - m); } else { loss = nan(); }
    }
    sl_loss[s.row] = loss;
}

@group(0) @binding(0) var<storage, read> st_loss: array<f32>;
@group(0) @binding(1) var<storage, read> st_w: array<T>;
@group(0) @binding(2) var<storage, read_write> st_out: array<T>;
@group(0) @binding(3) var<storage, read> st_q: array<u32>;  // [n, scale]

@compute @workgroup_size(WG)
fn softmax_loss_total(@builtin(local_invocation_index) l: u32) {
    let n = st_q[0];
    var num = 0.0;
    var den = 0.0;
    for (var i = l; i < n; i += WG) {
        var wi = 1.0;
        if (WEIGHTED) { wi = f32(st_w[i]); }
        num += wi * st_loss[i];
        den += wi;
    }
    num = seg_reduce(num, l, WG, false);
    den = seg_reduce(den, l, WG, false);
    if (l == 0u) { st_out[0] = T(select(0.0, num * bitcast<f32>(st_q[1]) / den, den != 0.0)); }
}

// factor = scale * dLoss / sum(w) (n without weights; 0 when that is 0), for the gradient rows.
@group(0) @binding(0) var<storage, read> sf_w: array<T>;
@group(0) @binding(1) var<storage, read> sf_dloss: array<G>;
@group(0) @binding(2) var<storage, read_write> sf_factor: array<f32>;
@group(0) @binding(3) var<storage, read> sf_q: array<u32>;  // [n, scale]

@compute @workgroup_size(WG)
fn softmax_loss_factor(@builtin(local_invocation_index) l: u32) {
    let n = sf_q[0];
    var den = 0.0;
    for (var i = l; i < n; i += WG) {
        if (WEIGHTED) { den += f32(sf_w[i]); } else { den += 1.0; }
    }
    den = seg_reduce(den, l, WG, false);
    if (l == 0u) {
        sf_factor[0] = select(0.0, bitcast<f32>(sf_q[1]) / den * f32(sf_dloss[0]), den != 0.0);
    }
}

// dX = (P - onehot(label)) * w_i * factor, or (P * sum_j t_ij - t) * w_i * factor.
@group(0) @binding(0) var<storage, read> sg_t: array<TL>;
@group(0) @binding(1) var<storage, read> sg_w: array<T>;
@group(0) @binding(2) var<storage, read> sg_p: array<T>;
@group(0) @binding(3) var<storage, read> sg_factor: array<f32>;
@group(0) @binding(4) var<storage, read_write> sg_dx: array<T>;
@group(0) @binding(5) var<storage, read> sg_q: array<u32>;  // [n, d, lanes]

@compute @workgroup_size(WG)
fn softmax_loss_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
                     @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = sg_q[0];
    let d = sg_q[1];
    let lanes = sg_q[2];
    let s = seg(wid, nwg, l, lanes);
    let dd = select(0u, d, s.row < n);
    let o = s.row * d;
    var ts = 0.0;
    if (LABEL_PROB) {
        for (var j = s.lane; j < dd; j += lanes) { ts += f32(sg_t[o + j]); }
        ts = seg_reduce(ts, l, lanes, false);
    }
    if (s.row >= n) { return; }
    var f = sg_factor[0];
    if (WEIGHTED) { f *= f32(sg_w[s.row]); }
    if (LABEL_PROB) {
        for (var j = s.lane; j < d; j += lanes) {
            sg_dx[o + j] = T((f32(sg_p[o + j]) * ts - f32(sg_t[o + j])) * f);
        }
        return;
    }
    let lab = i32(sg_t[s.row]);
    let bad = select(nan(), 0.0, lab >= 0 && u32(lab) < d);
    for (var j = s.lane; j < d; j += lanes) {
        sg_dx[o + j] = T((f32(sg_p[o + j]) - select(bad, 1.0, i32(j) == lab)) * f);
    }
}

// -- LabelCrossEntropy / CrossEntropy ------------------------------------------------------------

@group(0) @binding(0) var<storage, read> lx_x: array<T>;
@group(0) @binding(1) var<storage, read> lx_t: array<I>;
@group(0) @binding(2) var<storage, read_write> lx_y: array<T>;
@group(0) @binding(3) var<storage, read> lx_q: array<u32>;  // [n, d]

@compute @workgroup_size(WG)
fn label_xent(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= lx_q[0]) { return; }
    let d = lx_q[1];
    let lab = i32(lx_t[i]);
    var v = nan();
    if (lab >= 0 && u32(lab) < d) { v = -log(max(f32(lx_x[i * d + u32(lab)]), THRESHOLD)); }
    lx_y[i] = T(v);
}

@group(0) @binding(0) var<storage, read> lg_x: array<T>;
@group(0) @binding(1) var<storage, read> lg_t: array<I>;
@group(0) @binding(2) var<storage, read> lg_dy: array<T>;
@group(0) @binding(3) var<storage, read_write> lg_dx: array<T>;
@group(0) @binding(4) var<storage, read> lg_q: array<u32>;  // [n * d, d]

@compute @workgroup_size(WG)
fn label_xent_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= lg_q[0]) { return; }
    let d = lg_q[1];
    let i = e / d;
    let lab = i32(lg_t[i]);
    var v = 0.0;
    if (lab < 0 || u32(lab) >= d) {
        v = nan();
    } else if (e - i * d == u32(lab)) {
        v = -f32(lg_dy[i]) / max(f32(lg_x[e]), THRESHOLD);
    }
    lg_dx[e] = T(v);
}

@group(0) @binding(0) var<storage, read> xe_x: array<T>;
@group(0) @binding(1) var<storage, read> xe_t: array<T>;
@group(0) @binding(2) var<storage, read_write> xe_y: array<T>;
@group(0) @binding(3) var<storage, read> xe_q: array<u32>;  // [n, d, lanes]

@compute @workgroup_size(WG)
fn xent(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
        @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = xe_q[0];
    let d = xe_q[1];
    let lanes = xe_q[2];
    let s = seg(wid, nwg, l, lanes);
    let dd = select(0u, d, s.row < n);
    let o = s.row * d;
    var acc = 0.0;
    for (var j = s.lane; j < dd; j += lanes) {
        acc += f32(xe_t[o + j]) * log(max(f32(xe_x[o + j]), THRESHOLD));
    }
    acc = seg_reduce(acc, l, lanes, false);
    if (s.row < n && s.lane == 0u) { xe_y[s.row] = T(-acc); }
}

@group(0) @binding(0) var<storage, read> xg_x: array<T>;
@group(0) @binding(1) var<storage, read> xg_t: array<T>;
@group(0) @binding(2) var<storage, read> xg_dy: array<T>;
@group(0) @binding(3) var<storage, read_write> xg_dx: array<T>;
@group(0) @binding(4) var<storage, read> xg_q: array<u32>;  // [n * d, d]

@compute @workgroup_size(WG)
fn xent_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= xg_q[0]) { return; }
    xg_dx[e] = T(-f32(xg_t[e]) * f32(xg_dy[e / xg_q[1]]) / max(f32(xg_x[e]), THRESHOLD));
}

// -- SigmoidCrossEntropyWithLogits: MODE 0 plain, 1 log_D_trick, 2 unjoined_lr_loss ------------

fn log1pexp(x: f32) -> f32 { return max(x, 0.0) + log1p_(exp(-abs(x))); }  // log(1 + e^x)

fn sigm(x: f32) -> f32 {
    let e = exp(-abs(x));
    return select(e, 1.0, x >= 0.0) / (1.0 + e);
}

fn sxent_f(x: f32, t: f32) -> f32 {
    if (MODE == 1) { return (2.0 * t - 1.0) * -log1pexp(-x); }
    if (MODE == 2) { return t * x - (1.0 - t) * log1pexp(x); }
    return t * x - log1pexp(x);
}

fn sxent_df(x: f32, t: f32) -> f32 {
    if (MODE == 1) { return (2.0 * t - 1.0) * sigm(-x); }
    if (MODE == 2) { return t - (1.0 - t) * sigm(x); }
    return t - sigm(x);
}

@group(0) @binding(0) var<storage, read> sx_x: array<T>;
@group(0) @binding(1) var<storage, read> sx_t: array<T>;
@group(0) @binding(2) var<storage, read_write> sx_y: array<T>;
@group(0) @binding(3) var<storage, read> sx_q: array<u32>;  // [n, inner, lanes]

// y[i] = -mean_j f(x[i, j], t[i, j]) over the last dim (inner).
@compute @workgroup_size(WG)
fn sigmoid_xent(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
                @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = sx_q[0];
    let d = sx_q[1];
    let lanes = sx_q[2];
    let s = seg(wid, nwg, l, lanes);
    let dd = select(0u, d, s.row < n);
    let o = s.row * d;
    var acc = 0.0;
    for (var j = s.lane; j < dd; j += lanes) { acc += sxent_f(f32(sx_x[o + j]), f32(sx_t[o + j])); }
    acc = seg_reduce(acc, l, lanes, false);
    if (s.row < n && s.lane == 0u) { sx_y[s.row] = T(-acc / f32(d)); }
}

@group(0) @binding(0) var<storage, read> sd_dy: array<T>;
@group(0) @binding(1) var<storage, read> sd_x: array<T>;
@group(0) @binding(2) var<storage, read> sd_t: array<T>;
@group(0) @binding(3) var<storage, read_write> sd_dx: array<T>;
@group(0) @binding(4) var<storage, read> sd_q: array<u32>;  // [size, inner]

@compute @workgroup_size(WG)
fn sigmoid_xent_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= sd_q[0]) { return; }
    let inner = sd_q[1];
    sd_dx[e] = T(-f32(sd_dy[e / inner]) / f32(inner) * sxent_df(f32(sd_x[e]), f32(sd_t[e])));
}

// -- AveragedLoss (one workgroup), SquaredL2Distance ---------------------------------------------

@group(0) @binding(0) var<storage, read> al_x: array<T>;
@group(0) @binding(1) var<storage, read_write> al_y: array<T>;
@group(0) @binding(2) var<storage, read> al_q: array<u32>;  // [size]

@compute @workgroup_size(WG)
fn averaged_loss(@builtin(local_invocation_index) l: u32) {
    let size = al_q[0];
    var acc = 0.0;
    for (var i = l; i < size; i += WG) { acc += f32(al_x[i]); }
    acc = seg_reduce(acc, l, WG, false);
    if (l == 0u) { al_y[0] = T(acc / f32(size)); }
}

@group(0) @binding(0) var<storage, read> ag_dy: array<G>;
@group(0) @binding(1) var<storage, read_write> ag_dx: array<T>;
@group(0) @binding(2) var<storage, read> ag_q: array<u32>;  // [size]

@compute @workgroup_size(WG)
fn averaged_loss_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < ag_q[0]) { ag_dx[i] = T(f32(ag_dy[0]) / f32(ag_q[0])); }
}

@group(0) @binding(0) var<storage, read> l2_x: array<T>;
@group(0) @binding(1) var<storage, read> l2_y: array<T>;
@group(0) @binding(2) var<storage, read_write> l2_z: array<T>;
@group(0) @binding(3) var<storage, read> l2_q: array<u32>;  // [n, d, lanes]

@compute @workgroup_size(WG)
fn l2_distance(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let n = l2_q[0];
    let d = l2_q[1];
    let lanes = l2_q[2];
    let s = seg(wid, nwg, l, lanes);
    let dd = select(0u, d, s.row < n);
    let o = s.row * d;
    var acc = 0.0;
    for (var j = s.lane; j < dd; j += lanes) {
        let v = f32(l2_x[o + j]) - f32(l2_y[o + j]);
        acc += v * v;
    }
    acc = seg_reduce(acc, l, lanes, false);
    if (s.row < n && s.lane == 0u) { l2_z[s.row] = T(acc / 2.0); }
}

@group(0) @binding(0) var<storage, read> lg2_x: array<T>;
@group(0) @binding(1) var<storage, read> lg2_y: array<T>;
@group(0) @binding(2) var<storage, read> lg2_dd: array<T>;
@group(0) @binding(3) var<storage, read_write> lg2_dx: array<T>;
@group(0) @binding(4) var<storage, read_write> lg2_dy: array<T>;
@group(0) @binding(5) var<storage, read> lg2_q: array<u32>;  // [n * d, d]

@compute @workgroup_size(WG)
fn l2_distance_grad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let e = flat_index(gid, nwg);
    if (e >= lg2_q[0]) { return; }
    let v = (f32(lg2_x[e]) - f32(lg2_y[e])) * f32(lg2_dd[e / lg2_q[1]]);
    lg2_dx[e] = T(v);
    lg2_dy[e] = T(-v);
}

// -- Accuracy: one workgroup; a row hits when fewer than top_k classes rank ahead of its label
//    (a higher score, or an equal one at a lower index) -----------------------------------------

@group(0) @binding(0) var<storage, read> ac_x: array<T>;
@group(0) @binding(1) var<storage, read> ac_t: array<I>;
@group(0) @binding(2) var<storage, read_write> ac_out: array<f32>;
@group(0) @binding(3) var<storage, read> ac_q: array<u32>;  // [n, d, top_k]

@compute @workgroup_size(WG)
fn accuracy(@builtin(local_invocation_index) l: u32) {
    let n = ac_q[0];
    let d = ac_q[1];
    let top_k = ac_q[2];
    var hits = 0.0;
    var bad = 0.0;
    for (var i = l; i < n; i += WG) {
        let lab = i32(ac_t[i]);
        if (lab < 0 || u32(lab) >= d) {
            bad += 1.0;
            continue;
        }
        let o = i * d;
        let s = ac_x[o + u32(lab)];
        var ahead = 0u;
        for (var j = 0u; j < d && ahead < top_k; j++) {
            let v = ac_x[o + j];
            if (v > s || (v == s && i32(j) < lab)) { ahead++; }
        }
        if (ahead < top_k) { hits += 1.0; }
    }
    hits = seg_reduce(hits, l, WG, false);
    bad = seg_reduce(bad, l, WG, false);
    if (l == 0u) { ac_out[0] = select(hits / f32(n), nan(), bad != 0.0); }
}
