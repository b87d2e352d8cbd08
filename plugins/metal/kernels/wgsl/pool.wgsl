// MaxPool, AveragePool, PadImage and their gradients over any number (<= MAXSP) of spatial axes.
// X is viewed as [outer, *S, inner]: NCHW has outer = N * C, inner = 1; NHWC outer = N, inner = C.
// Gradients gather (one invocation per dX element), so no atomics are needed.
//
// Every entry's table (i32 words) starts [n, flag, nsp, inner, value bits] and continues with
// nsp-long fields: pooling in, out, kernel, stride, dilation, pad_begin, lo, hi (the divisor
// counts taps whose input index lies in [lo, hi)); PadImage in, out, pad_begin.

const MAXSP: i32 = 8;
const H: i32 = 5;  // header words

// The table, copied per invocation so that helpers read it whichever binding it came from.
var<private> G: array<i32, 69>;  // H + 8 * MAXSP

fn fld(f: i32, d: i32) -> i32 { return G[H + f * G[2] + d]; }
fn g_in(d: i32) -> i32 { return fld(0, d); }
fn g_out(d: i32) -> i32 { return fld(1, d); }
fn g_k(d: i32) -> i32 { return fld(2, d); }
fn g_s(d: i32) -> i32 { return fld(3, d); }
fn g_d(d: i32) -> i32 { return fld(4, d); }
fn g_p(d: i32) -> i32 { return fld(5, d); }

// How many taps of window o on axis d the average's divisor counts (the divisor is their product).
fn pool_count(d: i32, o: i32) -> i32 {
    var n = 0;
    for (var t = 0; t < g_k(d); t++) {
        let i = o * g_s(d) - g_p(d) + t * g_d(d);
        n += select(0, 1, i >= fld(6, d) && i < fld(7, d));
    }
    return n;
}

fn is_nan(v: f32) -> bool { return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u; }

// -- pool: one invocation per output, taps in row-major order as the cpu kernel combines them ----

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> pt: array<i32>;

@compute @workgroup_size(WG)
fn pool(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let gi = flat_index(gid, nwg);
    if (gi >= u32(pt[0])) { return; }
    for (var j = 0; j < H + 8 * pt[2]; j++) { G[j] = pt[j]; }
    let nsp = G[2];
    let inner = u32(G[3]);
    let average = G[1] != 0;
    var r = gi / inner;
    let c = gi % inner;
    var o: array<i32, MAXSP>;
    var taps = 1;
    var in_size = 1u;
    for (var d = nsp - 1; d >= 0; d--) {
        o[d] = i32(r % u32(g_out(d)));
        r /= u32(g_out(d));
        taps *= g_k(d);
        in_size *= u32(g_in(d));
    }
    let base = r * in_size;
    var acc = 0.0;
    var seen = false;  // no tap inside: the max of nothing but -inf padding
    for (var t = 0; t < taps; t++) {
        var tt = t;
        var off = 0u;
        var mult = 1u;
        var inside = true;
        for (var d = nsp - 1; d >= 0; d--) {
            let k = tt % g_k(d);
            tt /= g_k(d);
            let i = o[d] * g_s(d) - g_p(d) + k * g_d(d);
            inside = inside && i >= 0 && i < g_in(d);
            off += u32(i) * mult;
            mult *= u32(g_in(d));
        }
        if (!inside) { continue; }
        let v = f32(x[(base + off) * inner + c]);
        if (average) {
            acc += v;
        } else if (!seen || is_nan(v) || v > acc) {  // nan propagates, as numpy's maximum
            acc = v;
        }
        seen = true;
    }
    if (average) {
        var div = 1;
        for (var d = 0; d < nsp; d++) { div *= pool_count(d, o[d]); }
        acc /= f32(div);
    } else if (!seen) {
        acc = bitcast<f32>(0xff800000u | u32(G[1]));  // -inf (G[1] is 0 here; keeps it a runtime value)
    }
    y[gi] = T(acc);
}

// -- pool_gradient: per input cell, every window that reads it adds its share (max: the window's dY
// when the cell equals the window's max, ties included). Per axis only the windows that can
// contain the cell are walked, so global pooling costs one window, not the whole extent.

@group(0) @binding(0) var<storage, read> gx: array<T>;
@group(0) @binding(1) var<storage, read> gy: array<T>;
@group(0) @binding(2) var<storage, read> gdy: array<T>;
@group(0) @binding(3) var<storage, read_write> gdx: array<T>;
@group(0) @binding(4) var<storage, read> gt: array<i32>;

@compute @workgroup_size(WG)
fn pool_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let gi = flat_index(gid, nwg);
    if (gi >= u32(gt[0])) { return; }
    for (var j = 0; j < H + 8 * gt[2]; j++) { G[j] = gt[j]; }
    let nsp = G[2];
    let inner = u32(G[3]);
    let average = G[1] != 0;
    var r = gi / inner;
    let c = gi % inner;
    var num: array<i32, MAXSP>;  // the cell's padded index: window start o * stride + tap k * dilation
    var lo: array<i32, MAXSP>;
    var cnt: array<i32, MAXSP>;
    var combos = 1;
    var out_size = 1u;
    for (var d = nsp - 1; d >= 0; d--) {
        num[d] = i32(r % u32(g_in(d))) + g_p(d);
        r /= u32(g_in(d));
        let a = num[d] - (g_k(d) - 1) * g_d(d);
        lo[d] = select(0, (a + g_s(d) - 1) / g_s(d), a > 0);
        cnt[d] = max(min(g_out(d) - 1, num[d] / g_s(d)) - lo[d] + 1, 0);
        combos *= cnt[d];
        out_size *= u32(g_out(d));
    }
    let base = r * out_size;
    let xv = f32(gx[gi]);
    var acc = 0.0;
    for (var t = 0; t < combos; t++) {
        var tt = t;
        var off = 0u;
        var mult = 1u;
        var hit = true;
        var div = 1;
        for (var d = nsp - 1; d >= 0; d--) {
            let od = lo[d] + tt % cnt[d];
            tt /= cnt[d];
            let k = num[d] - od * g_s(d);
            hit = hit && k % g_d(d) == 0 && k / g_d(d) < g_k(d);
            off += u32(od) * mult;
            mult *= u32(g_out(d));
            if (average) { div *= pool_count(d, od); }
        }
        if (!hit) { continue; }
        let j = (base + off) * inner + c;
        if (average) {
            acc += f32(gdy[j]) / f32(div);
        } else if (xv == f32(gy[j])) {
            acc += f32(gdy[j]);
        }
    }
    gdx[gi] = T(acc);
}

// -- PadImage: flag = mode (0 constant, 1 reflect: mirror without the edge, 2 edge) --------------

@group(0) @binding(0) var<storage, read> px: array<T>;
@group(0) @binding(1) var<storage, read_write> py: array<T>;
@group(0) @binding(2) var<storage, read> ppt: array<i32>;

@compute @workgroup_size(WG)
fn pad_image(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let gi = flat_index(gid, nwg);
    if (gi >= u32(ppt[0])) { return; }
    for (var j = 0; j < H + 3 * ppt[2]; j++) { G[j] = ppt[j]; }
    let nsp = G[2];
    let inner = u32(G[3]);
    let mode = G[1];
    var r = gi / inner;
    let c = gi % inner;
    var off = 0u;
    var mult = 1u;
    var inside = true;
    for (var d = nsp - 1; d >= 0; d--) {
        let size = g_in(d);
        var i = i32(r % u32(g_out(d))) - fld(2, d);
        r /= u32(g_out(d));
        if (mode == 1) {
            i = abs(i);
            i = select(i, 2 * (size - 1) - i, i >= size);
        } else if (mode == 2) {
            i = clamp(i, 0, size - 1);
        }
        inside = inside && i >= 0 && i < size;
        off += u32(i) * mult;
        mult *= u32(size);
    }
    if (inside) {
        py[gi] = px[(r * mult + off) * inner + c];
    } else {
        py[gi] = T(bitcast<f32>(u32(G[4])));
    }
}

// One invocation per dX cell. Per axis, the dY cells that copied this cell: itself, plus for
// reflect its mirror images in either pad, for edge (a border cell) the whole pad range.
@group(0) @binding(0) var<storage, read> pdy: array<T>;
@group(0) @binding(1) var<storage, read_write> pdx: array<T>;
@group(0) @binding(2) var<storage, read> pgt: array<i32>;

@compute @workgroup_size(WG)
fn pad_image_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let gi = flat_index(gid, nwg);
    if (gi >= u32(pgt[0])) { return; }
    for (var j = 0; j < H + 3 * pgt[2]; j++) { G[j] = pgt[j]; }
    let nsp = G[2];
    let inner = u32(G[3]);
    let mode = G[1];
    var r = gi / inner;
    let c = gi % inner;
    var lo: array<i32, MAXSP>;
    var cnt: array<i32, MAXSP>;
    var alt: array<array<i32, 2>, MAXSP>;
    var combos = 1;
    var out_size = 1u;
    for (var d = nsp - 1; d >= 0; d--) {
        let size = g_in(d);
        let i = i32(r % u32(size));
        r /= u32(size);
        let b = fld(2, d);
        let e = g_out(d) - size - b;
        lo[d] = b + i;
        cnt[d] = 1;
        if (mode == 2) {  // a contiguous range
            if (i == 0) { lo[d] = 0; }
            cnt[d] = select(b + i, g_out(d) - 1, i == size - 1) - lo[d] + 1;
        } else if (mode == 1) {  // pad cell b - j copies j; end pad cell b + size - 1 + j copies size - 1 - j
            if (i >= 1 && i <= b) { alt[d][cnt[d] - 1] = b - i; cnt[d]++; }
            if (i >= size - 1 - e && i <= size - 2) { alt[d][cnt[d] - 1] = b + 2 * (size - 1) - i; cnt[d]++; }
        }
        combos *= cnt[d];
        out_size *= u32(g_out(d));
    }
    var acc = 0.0;
    for (var t = 0; t < combos; t++) {
        var tt = t;
        var off = 0u;
        var mult = 1u;
        for (var d = nsp - 1; d >= 0; d--) {
            let j = tt % cnt[d];
            tt /= cnt[d];
            let o = select(lo[d] + j, alt[d][max(j - 1, 0)], mode == 1 && j > 0);
            off += u32(o) * mult;
            mult *= u32(g_out(d));
        }
        acc += f32(pdy[(r * out_size + off) * inner + c]);
    }
    pdx[gi] = T(acc);
}
