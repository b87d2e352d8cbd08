// SpatialBN, LRN, LayerNorm, Dropout and their gradients. Everything is computed in f32 and
// rounded once on store. Per-channel (SpatialBN) and per-row (LayerNorm) statistics: a workgroup
// per channel/row, each invocation striding over the values, then a tree sum in workgroup memory.
// Channel layouts are (outer, C, inner): element (o, c, j) at (o * C + c) * inner + j.
// S is the type of LRN's scale buffers (T for LRN's output, f32 when LRNGradient computes it).
// Params p: u32 words, floats as bits.

var<workgroup> partial: array<f32, WG>;

// The sum of v over the workgroup; call from uniform control flow.
fn wg_sum(v: f32, l: u32) -> f32 {
    partial[l] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) { partial[l] += partial[l + s]; }
        workgroupBarrier();
    }
    let r = partial[0];
    workgroupBarrier();  // partial is reused by the next sum
    return r;
}

// The e-th of the outer * inner values of channel c.
fn chan_index(e: u32, c: u32, C: u32, inner: u32) -> u32 {
    return (e / inner * C + c) * inner + e % inner;
}

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 { return wid.x + wid.y * nwg.x; }

// -- SpatialBN ----------------------------------------------------------------------------------

// Training: batch mean and biased variance of channel c into coef = [mean, inv_std] per channel,
// then the variances at [2C + c] (for bn_running). p = [outer, C, inner, eps].
@group(0) @binding(0) var<storage, read> bs_x: array<T>;
@group(0) @binding(1) var<storage, read_write> bs_coef: array<f32>;
@group(0) @binding(2) var<storage, read> bs_p: array<u32>;

@compute @workgroup_size(WG)
fn bn_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
            @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = group_index(wid, nwg);
    let C = bs_p[1];
    if (c >= C) { return; }
    let inner = bs_p[2];
    let m = bs_p[0] * inner;
    var s = 0.0;
    for (var e = l; e < m; e += WG) { s += f32(bs_x[chan_index(e, c, C, inner)]); }
    let mu = wg_sum(s, l) / f32(m);
    s = 0.0;
    for (var e = l; e < m; e += WG) {
        let d = f32(bs_x[chan_index(e, c, C, inner)]) - mu;
        s += d * d;
    }
    let v = wg_sum(s, l) / f32(m);
    if (l == 0u) {
        bs_coef[2u * c] = mu;
        bs_coef[2u * c + 1u] = 1.0 / sqrt(v + bitcast<f32>(bs_p[3]));
        bs_coef[2u * C + c] = v;
    }
}

// The saved and running statistics from bn_stats' coef. p = [C, m, momentum].
@group(0) @binding(0) var<storage, read> br_coef: array<f32>;
@group(0) @binding(1) var<storage, read> br_rmean: array<T>;
@group(0) @binding(2) var<storage, read> br_rvar: array<T>;
@group(0) @binding(3) var<storage, read_write> br_rm: array<T>;
@group(0) @binding(4) var<storage, read_write> br_rv: array<T>;
@group(0) @binding(5) var<storage, read_write> br_mu: array<T>;
@group(0) @binding(6) var<storage, read_write> br_inv: array<T>;
@group(0) @binding(7) var<storage, read> br_p: array<u32>;

@compute @workgroup_size(WG)
fn bn_running(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat_index(gid, nwg);
    let C = br_p[0];
    if (c >= C) { return; }
    let m = f32(br_p[1]);
    let mom = bitcast<f32>(br_p[2]);
    let mu = br_coef[2u * c];
    br_mu[c] = T(mu);
    br_inv[c] = T(br_coef[2u * c + 1u]);
    br_rm[c] = T(mom * f32(br_rmean[c]) + (1.0 - mom) * mu);
    // the running variance takes the unbiased batch variance, as Caffe2 and cuDNN
    br_rv[c] = T(mom * f32(br_rvar[c]) + (1.0 - mom) * (m / (m - 1.0)) * br_coef[2u * C + c]);
}

// Inference: coef = [mean, 1 / sqrt(var + eps)] from the running statistics. p = [C, eps].
@group(0) @binding(0) var<storage, read> bt_mean: array<T>;
@group(0) @binding(1) var<storage, read> bt_var: array<T>;
@group(0) @binding(2) var<storage, read_write> bt_coef: array<f32>;
@group(0) @binding(3) var<storage, read> bt_p: array<u32>;

@compute @workgroup_size(WG)
fn bn_test_coef(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = flat_index(gid, nwg);
    if (c >= bt_p[0]) { return; }
    bt_coef[2u * c] = f32(bt_mean[c]);
    bt_coef[2u * c + 1u] = 1.0 / sqrt(f32(bt_var[c]) + bitcast<f32>(bt_p[1]));
}

// p = [n, C, inner].
@group(0) @binding(0) var<storage, read> ba_x: array<T>;
@group(0) @binding(1) var<storage, read> ba_scale: array<T>;
@group(0) @binding(2) var<storage, read> ba_bias: array<T>;
@group(0) @binding(3) var<storage, read> ba_coef: array<f32>;
@group(0) @binding(4) var<storage, read_write> ba_y: array<T>;
@group(0) @binding(5) var<storage, read> ba_p: array<u32>;

@compute @workgroup_size(WG)
fn bn_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= ba_p[0]) { return; }
    let c = i / ba_p[2] % ba_p[1];
    let a = f32(ba_scale[c]) * ba_coef[2u * c + 1u];
    ba_y[i] = T((f32(ba_x[i]) - ba_coef[2u * c]) * a + f32(ba_bias[c]));
}

// Per channel: coef = [mean, inv, scale * inv, sum(dY), sum(dY * xhat)]. is_test: stat is the
// running variance, else saved_inv_var. p = [outer, C, inner, eps, is_test].
@group(0) @binding(0) var<storage, read> bg_x: array<T>;
@group(0) @binding(1) var<storage, read> bg_scale: array<T>;
@group(0) @binding(2) var<storage, read> bg_dy: array<T>;
@group(0) @binding(3) var<storage, read> bg_mean: array<T>;
@group(0) @binding(4) var<storage, read> bg_stat: array<T>;
@group(0) @binding(5) var<storage, read_write> bg_coef: array<f32>;
@group(0) @binding(6) var<storage, read> bg_p: array<u32>;

@compute @workgroup_size(WG)
fn bn_grad_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
                 @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = group_index(wid, nwg);
    let C = bg_p[1];
    if (c >= C) { return; }
    let inner = bg_p[2];
    let m = bg_p[0] * inner;
    let mu = f32(bg_mean[c]);
    let st = f32(bg_stat[c]);
    let inv = select(st, 1.0 / sqrt(st + bitcast<f32>(bg_p[3])), bg_p[4] != 0u);
    var sb = 0.0;
    var ss = 0.0;
    for (var e = l; e < m; e += WG) {
        let i = chan_index(e, c, C, inner);
        let g = f32(bg_dy[i]);
        sb += g;
        ss += g * (f32(bg_x[i]) - mu) * inv;
    }
    sb = wg_sum(sb, l);
    ss = wg_sum(ss, l);
    if (l == 0u) {
        bg_coef[5u * c] = mu;
        bg_coef[5u * c + 1u] = inv;
        bg_coef[5u * c + 2u] = f32(bg_scale[c]) * inv;
        bg_coef[5u * c + 3u] = sb;
        bg_coef[5u * c + 4u] = ss;
    }
}

// dX = scale * inv * (dY - (dbias + xhat * dscale) * w), w = 1 / M in training and 0 in inference
// (the statistics are constants there); invocations c < C also store dscale and dbias.
// p = [n, C, inner, w]; launched over max(n, C).
@group(0) @binding(0) var<storage, read> bd_x: array<T>;
@group(0) @binding(1) var<storage, read> bd_dy: array<T>;
@group(0) @binding(2) var<storage, read> bd_coef: array<f32>;
@group(0) @binding(3) var<storage, read_write> bd_dx: array<T>;
@group(0) @binding(4) var<storage, read_write> bd_dscale: array<T>;
@group(0) @binding(5) var<storage, read_write> bd_dbias: array<T>;
@group(0) @binding(6) var<storage, read> bd_p: array<u32>;

@compute @workgroup_size(WG)
fn bn_grad_apply(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i < bd_p[1]) {
        bd_dscale[i] = T(bd_coef[5u * i + 4u]);
        bd_dbias[i] = T(bd_coef[5u * i + 3u]);
    }
    if (i >= bd_p[0]) { return; }
    let k = 5u * (i / bd_p[2] % bd_p[1]);
    let w = bitcast<f32>(bd_p[3]);
    let xhat = (f32(bd_x[i]) - bd_coef[k]) * bd_coef[k + 1u];
    bd_dx[i] = T(bd_coef[k + 2u] * (f32(bd_dy[i]) - (bd_coef[k + 3u] + xhat * bd_coef[k + 4u]) * w));
}

// -- LRN ----------------------------------------------------------------------------------------

// The channels whose window holds channel c: c - (size-1)/2 .. c + size/2, clipped to [0, C).
fn lrn_window(c: i32, C: i32, size: i32) -> vec2<i32> {
    let lo = c - (size - 1) / 2;
    return vec2<i32>(max(lo, 0), min(lo + size, C));
}

// Y = X * scale^-beta, scale = bias + alpha / size * (window sum of X^2).
// p = [n, C, inner, size, alpha, beta, bias].
@group(0) @binding(0) var<storage, read> lr_x: array<T>;
@group(0) @binding(1) var<storage, read_write> lr_y: array<T>;
@group(0) @binding(2) var<storage, read_write> lr_s: array<S>;
@group(0) @binding(3) var<storage, read> lr_p: array<u32>;

@compute @workgroup_size(WG)
fn lrn(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= lr_p[0]) { return; }
    let C = lr_p[1];
    let inner = lr_p[2];
    let size = i32(lr_p[3]);
    let c = i / inner % C;
    let c0 = i - c * inner;
    let w = lrn_window(i32(c), i32(C), size);
    var s = 0.0;
    for (var k = w.x; k < w.y; k++) {
        let v = f32(lr_x[c0 + u32(k) * inner]);
        s += v * v;
    }
    s = bitcast<f32>(lr_p[6]) + bitcast<f32>(lr_p[4]) / f32(size) * s;
    lr_y[i] = T(f32(lr_x[i]) * pow(s, -bitcast<f32>(lr_p[5])));
    lr_s[i] = S(s);
}

// dX = dY * scale^-beta - 2 * alpha * beta / size * X * (window sum of dY * Y / scale): the window
// is symmetric, so the outputs that see channel c are the window around c.
// p = [n, C, inner, size, alpha, beta].
@group(0) @binding(0) var<storage, read> lg_x: array<T>;
@group(0) @binding(1) var<storage, read> lg_y: array<T>;
@group(0) @binding(2) var<storage, read> lg_dy: array<T>;
@group(0) @binding(3) var<storage, read> lg_s: array<S>;
@group(0) @binding(4) var<storage, read_write> lg_dx: array<T>;
@group(0) @binding(5) var<storage, read> lg_p: array<u32>;

@compute @workgroup_size(WG)
fn lrn_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= lg_p[0]) { return; }
    let C = lg_p[1];
    let inner = lg_p[2];
    let size = i32(lg_p[3]);
    let alpha = bitcast<f32>(lg_p[4]);
    let beta = bitcast<f32>(lg_p[5]);
    let c = i / inner % C;
    let c0 = i - c * inner;
    let win = lrn_window(i32(c), i32(C), size);
    var w = 0.0;
    for (var k = win.x; k < win.y; k++) {
        let j = c0 + u32(k) * inner;
        w += f32(lg_dy[j]) * f32(lg_y[j]) / f32(lg_s[j]);
    }
    let g = f32(lg_dy[i]) * pow(f32(lg_s[i]), -beta) - 2.0 * alpha * beta / f32(size) * f32(lg_x[i]) * w;
    lg_dx[i] = T(g);
}

// -- LayerNorm ----------------------------------------------------------------------------------

// A workgroup per row of D values; gamma/beta are read when affine. p = [rows, D, eps, affine].
@group(0) @binding(0) var<storage, read> ln_x: array<T>;
@group(0) @binding(1) var<storage, read> ln_gamma: array<T>;
@group(0) @binding(2) var<storage, read> ln_beta: array<T>;
@group(0) @binding(3) var<storage, read_write> ln_y: array<T>;
@group(0) @binding(4) var<storage, read_write> ln_mean: array<T>;
@group(0) @binding(5) var<storage, read_write> ln_std: array<T>;
@group(0) @binding(6) var<storage, read> ln_p: array<u32>;

@compute @workgroup_size(WG)
fn layer_norm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
              @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = group_index(wid, nwg);
    if (row >= ln_p[0]) { return; }
    let D = ln_p[1];
    let base = row * D;
    let affine = ln_p[3] != 0u;
    var s = 0.0;
    for (var j = l; j < D; j += WG) { s += f32(ln_x[base + j]); }
    let mu = wg_sum(s, l) / f32(D);
    s = 0.0;
    for (var j = l; j < D; j += WG) {
        let d = f32(ln_x[base + j]) - mu;
        s += d * d;
    }
    let sd = sqrt(wg_sum(s, l) / f32(D) + bitcast<f32>(ln_p[2]));
    for (var j = l; j < D; j += WG) {
        var v = (f32(ln_x[base + j]) - mu) / sd;
        if (affine) { v = v * f32(ln_gamma[j]) + f32(ln_beta[j]); }
        ln_y[base + j] = T(v);
    }
    if (l == 0u) {
        ln_mean[row] = T(mu);
        ln_std[row] = T(sd);
    }
}

// dX per row, with g = dY (* gamma): (g - mean(g) - xhat * mean(g * xhat)) / std.
// p = [rows, D, affine].
@group(0) @binding(0) var<storage, read> lng_dy: array<T>;
@group(0) @binding(1) var<storage, read> lng_x: array<T>;
@group(0) @binding(2) var<storage, read> lng_mean: array<T>;
@group(0) @binding(3) var<storage, read> lng_std: array<T>;
@group(0) @binding(4) var<storage, read> lng_gamma: array<T>;
@group(0) @binding(5) var<storage, read_write> lng_dx: array<T>;
@group(0) @binding(6) var<storage, read> lng_p: array<u32>;

fn lng_g(j: u32, col: u32, affine: bool) -> f32 {
    return select(f32(lng_dy[j]), f32(lng_dy[j]) * f32(lng_gamma[col]), affine);
}

@compute @workgroup_size(WG)
fn layer_norm_gradient(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
                       @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = group_index(wid, nwg);
    if (row >= lng_p[0]) { return; }
    let D = lng_p[1];
    let base = row * D;
    let affine = lng_p[2] != 0u;
    let mu = f32(lng_mean[row]);
    let sd = f32(lng_std[row]);
    var sg = 0.0;
    var sgx = 0.0;
    for (var j = l; j < D; j += WG) {
        let g = lng_g(base + j, j, affine);
        sg += g;
        sgx += g * (f32(lng_x[base + j]) - mu) / sd;
    }
    sg = wg_sum(sg, l) / f32(D);
    sgx = wg_sum(sgx, l) / f32(D);
    for (var j = l; j < D; j += WG) {
        let xhat = (f32(lng_x[base + j]) - mu) / sd;
        lng_dx[base + j] = T((lng_g(base + j, j, affine) - sg - xhat * sgx) / sd);
    }
}

// dgamma and dbeta: one invocation per column, summing over the rows. p = [rows, D].
@group(0) @binding(0) var<storage, read> lna_dy: array<T>;
@group(0) @binding(1) var<storage, read> lna_x: array<T>;
@group(0) @binding(2) var<storage, read> lna_mean: array<T>;
@group(0) @binding(3) var<storage, read> lna_std: array<T>;
@group(0) @binding(4) var<storage, read_write> lna_dgamma: array<T>;
@group(0) @binding(5) var<storage, read_write> lna_dbeta: array<T>;
@group(0) @binding(6) var<storage, read> lna_p: array<u32>;

@compute @workgroup_size(WG)
fn layer_norm_affine_gradient(@builtin(global_invocation_id) gid: vec3<u32>,
                              @builtin(num_workgroups) nwg: vec3<u32>) {
    let j = flat_index(gid, nwg);
    let D = lna_p[1];
    if (j >= D) { return; }
    var sg = 0.0;
    var sb = 0.0;
    for (var r = 0u; r < lna_p[0]; r++) {
        let g = f32(lna_dy[r * D + j]);
        sg += g * (f32(lna_x[r * D + j]) - f32(lna_mean[r])) / f32(lna_std[r]);
        sb += g;
    }
    lna_dgamma[j] = T(sg);
    lna_dbeta[j] = T(sb);
}

// -- Dropout ------------------------------------------------------------------------------------

// kaffa_hash of cl/kaffa.h (u32 arithmetic wraps in WGSL as in OpenCL C).
fn kaffa_hash(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

// A uniform draw in (0, 1) from (seed, stream, index): independent of the launch geometry.
fn uniform01(seed: u32, stream: u32, idx: u32) -> f32 {
    let h = kaffa_hash(kaffa_hash(seed ^ kaffa_hash(stream + 0x9e3779b9u)) ^ idx);
    return (f32(h >> 8u) + 0.5) * (1.0 / 16777216.0);
}

// Y = X * scale where u >= ratio, else 0 (ratio 0, scale 1: the identity, exactly, as u > 0).
// p = [n, seed, stream, ratio, scale].
@group(0) @binding(0) var<storage, read> dr_x: array<T>;
@group(0) @binding(1) var<storage, read_write> dr_y: array<T>;
@group(0) @binding(2) var<storage, read> dr_p: array<u32>;

@compute @workgroup_size(WG)
fn dropout(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= dr_p[0]) { return; }
    let keep = uniform01(dr_p[1], dr_p[2], i) >= bitcast<f32>(dr_p[3]);
    dr_y[i] = select(T(0), T(f32(dr_x[i]) * bitcast<f32>(dr_p[4])), keep);
}
