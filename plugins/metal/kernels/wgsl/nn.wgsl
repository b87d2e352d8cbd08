// Convolution helpers around the GEMM of blas.wgsl (kaffa_metal.kernels.nn): im2col, col2im (a
// gather: every cell of the result is written once, so no atomics), a swap of the first two axes
// (NCHW data to and from [channels, samples, positions]), per-channel sums (bias gradients) and a
// zero fill. Column matrices are [C * prod(K), cnt, op]: row, then sample, then output position.
//
// Layouts: the "big" side of a convolution (Conv's X) is addressed as
// data[s * xs_n + c * xs_c + pix * xs_p] with pix the row-major flat spatial index, which covers
// NCHW (xs_c = prod(S), xs_p = 1) and NHWC (xs_c = 1, xs_p = C) alike. Column rows follow the
// filter's layout: row R = g * ck + r (ck = C/g * prod(K)) with r = c' * prod(K) + tap for NCHW
// filters [M, C/g, *K] or r = tap * C/g + c' for NHWC ones [M, *K, C/g] (tap_major).
//
// Window parameters (u32 words, p[0 .. H - 1] the header of each entry point, then per spatial
// axis, nsp words each): S (big-side sizes), O (small-side sizes), K (kernel), stride, dilation,
// begin pad. End pads need no word: anything outside [0, S) is padding.

const H: u32 = 16u;

fn g_s(nsp: u32, d: u32) -> u32 { return H + d; }
fn g_o(nsp: u32, d: u32) -> u32 { return H + nsp + d; }
fn g_k(nsp: u32, d: u32) -> u32 { return H + 2u * nsp + d; }
fn g_st(nsp: u32, d: u32) -> u32 { return H + 3u * nsp + d; }
fn g_di(nsp: u32, d: u32) -> u32 { return H + 4u * nsp + d; }
fn g_pb(nsp: u32, d: u32) -> u32 { return H + 5u * nsp + d; }

// -- im2col: cols [C * kp, cnt, op] from the big side, samples s0 .. s0 + cnt - 1 -------------
// An invocation fills one run of cols along the last spatial axis (O[nsp - 1] entries): the
// divisions that decode its row and window are paid once per run, not per entry.
// p = [runs, C, cnt, s0, kp, op, sp, 0, group, cg, tap_major, xs_n, xs_c, xs_p, nsp, 0, geometry...]

@group(0) @binding(0) var<storage, read> ic_x: array<T>;
@group(0) @binding(1) var<storage, read_write> ic_cols: array<T>;
@group(0) @binding(2) var<storage, read> ic_p: array<u32>;

@compute @workgroup_size(WG)
fn im2col(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= ic_p[0]) { return; }
    let cnt = ic_p[2];
    let s0 = ic_p[3];
    let kp = ic_p[4];
    let op = ic_p[5];
    let cg = ic_p[9];
    let xs_p = ic_p[13];
    let nsp = ic_p[14];
    let last = nsp - 1u;
    let o_last = ic_p[g_o(nsp, last)];
    let runs = op / o_last;  // runs per (row, sample)
    let prun = idx % runs;
    let q = idx / runs;  // row * cnt + sample
    let s = q % cnt;
    let rr = q / cnt;
    let ck = cg * kp;
    let g = rr / ck;
    let r = rr % ck;
    var c: u32;
    var t: u32;
    if (ic_p[10] != 0u) {
        t = r / cg;
        c = g * cg + r % cg;
    } else {
        t = r % kp;
        c = g * cg + r / kp;
    }
    // the last axis' tap, then the leading axes' window origin
    let k_last = ic_p[g_k(nsp, last)];
    let kd_last = t % k_last;
    var tt = t / k_last;
    var pp = prun;
    let size = ic_p[g_s(nsp, last)];
    var off = 0u;
    var mul = size;
    var inside = true;
    for (var d = last; d > 0u; d--) {
        let e = d - 1u;
        let kd = tt % ic_p[g_k(nsp, e)];
        tt /= ic_p[g_k(nsp, e)];
        let od = pp % ic_p[g_o(nsp, e)];
        pp /= ic_p[g_o(nsp, e)];
        let se = i32(ic_p[g_s(nsp, e)]);
        let pos = i32(od * ic_p[g_st(nsp, e)] + kd * ic_p[g_di(nsp, e)]) - i32(ic_p[g_pb(nsp, e)]);
        inside = inside && pos >= 0 && pos < se;
        off += u32(pos) * mul;
        mul *= u32(se);
    }
    let dst = q * op + prun * o_last;
    let st = i32(ic_p[g_st(nsp, last)]);
    var pos = i32(kd_last * ic_p[g_di(nsp, last)]) - i32(ic_p[g_pb(nsp, last)]);
    let src = (s0 + s) * ic_p[11] + c * ic_p[12] + off * xs_p;
    for (var ol = 0u; ol < o_last; ol++) {
        var v = T(0);
        if (inside && pos >= 0 && pos < i32(size)) { v = ic_x[src + u32(pos) * xs_p]; }
        ic_cols[dst + ol] = v;
        pos += st;
    }
}

// -- col2im: the big side (samples s0 ..) from cols [C * kp, cnt, op], plus bias[c] -------------
// Each cell sums the column entries of every (tap, output position) whose window reads it; the
// taps are walked as an odometer (last axis fastest), dividing only by strides above 1.
// p = [total, C, cnt, s0, kp, op, sp, has_bias, group, cg, tap_major, xs_n, xs_c, xs_p, nsp,
// channels_fastest, geometry...]; the invocations walk the result in memory order.

@group(0) @binding(0) var<storage, read> ci_cols: array<T>;
@group(0) @binding(1) var<storage, read> ci_bias: array<T>;  // bound to cols when unused
@group(0) @binding(2) var<storage, read_write> ci_dx: array<T>;
@group(0) @binding(3) var<storage, read> ci_p: array<u32>;

const MAXD: u32 = 8u;

@compute @workgroup_size(WG)
fn col2im(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= ci_p[0]) { return; }
    let C = ci_p[1];
    let cnt = ci_p[2];
    let kp = ci_p[4];
    let op = ci_p[5];
    let sp = ci_p[6];
    let cg = ci_p[9];
    let tap_major = ci_p[10] != 0u;
    let nsp = ci_p[14];
    var s: u32;
    var c: u32;
    var i: u32;
    if (ci_p[15] != 0u) {
        c = idx % C;
        let q = idx / C;
        i = q % sp;
        s = q / sp;
    } else {
        i = idx % sp;
        let q = idx / sp;
        c = q % C;
        s = q / C;
    }
    let g = c / cg;
    let cl = c % cg;
    // per axis: the cell's padded coordinate, kernel, dilation, stride, output size
    var at: array<i32, MAXD>;
    var kk: array<u32, MAXD>;
    var di: array<i32, MAXD>;
    var st: array<u32, MAXD>;
    var os: array<u32, MAXD>;
    var kd: array<u32, MAXD>;
    var ii = i;
    for (var d = nsp; d > 0u; d--) {
        let e = d - 1u;
        let size = ci_p[g_s(nsp, e)];
        at[e] = i32(ii % size + ci_p[g_pb(nsp, e)]);
        ii /= size;
        kk[e] = ci_p[g_k(nsp, e)];
        di[e] = i32(ci_p[g_di(nsp, e)]);
        st[e] = ci_p[g_st(nsp, e)];
        os[e] = ci_p[g_o(nsp, e)];
        kd[e] = 0u;
    }
    let row0 = g * cg * kp;  // this group's first row of cols
    let row_step = cnt * op;
    var acc = 0.0;
    for (var t = 0u; t < kp; t++) {
        var pix = 0u;
        var ok = true;
        for (var d = 0u; d < nsp; d++) {
            let num = at[d] - i32(kd[d]) * di[d];
            if (num < 0) {
                ok = false;
                break;
            }
            var o = u32(num);
            if (st[d] != 1u) {
                if (o % st[d] != 0u) {
                    ok = false;
                    break;
                }
                o /= st[d];
            }
            if (o >= os[d]) {
                ok = false;
                break;
            }
            pix = pix * os[d] + o;
        }
        if (ok) {
            let r = select(cl * kp + t, t * cg + cl, tap_major);
            acc += f32(ci_cols[(row0 + r) * row_step + s * op + pix]);
        }
        for (var d = nsp; d > 0u; d--) {  // next tap
            kd[d - 1u] += 1u;
            if (kd[d - 1u] < kk[d - 1u]) { break; }
            kd[d - 1u] = 0u;
        }
    }
    if (ci_p[7] != 0u) { acc += f32(ci_bias[c]); }
    ci_dx[(ci_p[3] + s) * ci_p[11] + c * ci_p[12] + i * ci_p[13]] = T(acc);
}

// -- swap01: y [b, a, inner] (from element y0 on) = x [a, b, inner] with its first two axes swapped
// p = [total, a, b, inner, y0]

@group(0) @binding(0) var<storage, read> sw_x: array<T>;
@group(0) @binding(1) var<storage, read_write> sw_y: array<T>;
@group(0) @binding(2) var<storage, read> sw_p: array<u32>;

@compute @workgroup_size(WG)
fn swap01(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= sw_p[0]) { return; }
    let a = sw_p[1];
    let inner = sw_p[3];
    let q = idx % inner;
    let rest = idx / inner;
    let i = rest % a;
    let j = rest / a;
    sw_y[sw_p[4] + idx] = sw_x[(i * sw_p[2] + j) * inner + q];
}

// -- channel_sum: out[c] = sum over o, i of x[(o * C + c) * inner + i], a workgroup per channel --
// p = [C, outer, inner]

@group(0) @binding(0) var<storage, read> cs_x: array<T>;
@group(0) @binding(1) var<storage, read_write> cs_out: array<T>;
@group(0) @binding(2) var<storage, read> cs_p: array<u32>;

var<workgroup> cs_partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn channel_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
               @builtin(num_workgroups) nwg: vec3<u32>) {
    let c = wid.x + wid.y * nwg.x;
    let C = cs_p[0];
    if (c >= C) { return; }
    let inner = cs_p[2];
    let n = cs_p[1] * inner;
    var acc = 0.0;
    for (var e = l; e < n; e += WG) {
        acc += f32(cs_x[((e / inner) * C + c) * inner + e % inner]);
    }
    cs_partial[l] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) { cs_partial[l] += cs_partial[l + s]; }
        workgroupBarrier();
    }
    if (l == 0u) { cs_out[c] = T(cs_partial[0]); }
}

// -- zero: y[i] = 0, p = [n] --------------------------------------------------------------------

@group(0) @binding(0) var<storage, read_write> z_y: array<T>;
@group(0) @binding(1) var<storage, read> z_p: array<u32>;

@compute @workgroup_size(WG)
fn zero(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let idx = flat_index(gid, nwg);
    if (idx >= z_p[0]) { return; }
    z_y[idx] = T(0);
}
