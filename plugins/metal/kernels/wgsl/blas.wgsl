// GEMM: C = alpha * op(A) · op(B) + beta * C (+ bias), batched, any M, N, K (see blas.gemm).
//
// A workgroup of 16 x 16 invocations owns a TM x TN = 64 x 64 tile of C; each invocation a 4 x 4
// block of it, held as 4 vec4 accumulators (4 rows x 4 neighbouring columns). K is walked TK = 16
// at a time: the tiles of op(A) (TM x TK) and op(B) (TK x TN) are staged in workgroup memory as
// vec4s along m and n, zero-filled past the matrix edges (so the inner loop has no edge test),
// then every k costs two vec4 loads from workgroup memory and four vec4 multiply-adds.
//
// Element (m, k) of op(A) is at a[a_off + m * sam + k * sak], (k, n) of op(B) at
// b[b_off + k * sbk + n * sbn], (m, n) of C at c[c_off + m * scm + n * scn]: transposes are
// swapped strides. Batch z takes (a_off, b_off, c_off, bias_off) from offs[4 z ..], which covers
// strided, broadcast and grouped batches alike. Sums are in f32 (A); C is stored once as T.

@group(0) @binding(0) var<storage, read> a: array<T>;
@group(0) @binding(1) var<storage, read> b: array<T>;
@group(0) @binding(2) var<storage, read> bias: array<T>;  // bound to a when unused
@group(0) @binding(3) var<storage, read_write> c: array<T>;
@group(0) @binding(4) var<storage, read> offs: array<u32>;
// [M, N, K, sam, sak, sbk, sbn, scm, scn, alpha, beta, bias_mode (0 none, 1 per row, 2 per
// column), batch0 (the first batch of this dispatch)]
@group(0) @binding(5) var<storage, read> p: array<u32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

// as_[kk * 16 + q] = op(A)[m0 + 4 q .. m0 + 4 q + 3, k0 + kk] (vec4s along m); bs_ likewise along n.
var<workgroup> as_: array<vec4<f32>, 256>;
var<workgroup> bs_: array<vec4<f32>, 256>;

// op(A)[m, k] and op(B)[k, n] of this batch, 0 past the edges.
fn load_a(a0: u32, m: u32, k: u32) -> f32 {
    if (m >= p[0] || k >= p[2]) { return 0.0; }
    return f32(a[a0 + m * p[3] + k * p[4]]);
}

fn load_b(b0: u32, k: u32, n: u32) -> f32 {
    if (n >= p[1] || k >= p[2]) { return 0.0; }
    return f32(b[b0 + k * p[5] + n * p[6]]);
}

// Row m of C, columns n .. n + 3: v = alpha * acc (+ beta * C) (+ bias), stored as T.
fn store4(c0: u32, bias0: u32, m: u32, n: u32, acc: vec4<f32>) {
    if (m >= p[0]) { return; }
    let alpha = bitcast<f32>(p[9]);
    let beta = bitcast<f32>(p[10]);
    let mode = p[11];
    for (var j = 0u; j < 4u; j++) {
        let nj = n + j;
        if (nj >= p[1]) { return; }
        let o = c0 + m * p[7] + nj * p[8];
        var v = alpha * acc[j];
        if (beta != 0.0) { v += beta * f32(c[o]); }  // C is not read otherwise: it may be garbage
        if (mode == 1u) { v += f32(bias[bias0 + m]); }
        if (mode == 2u) { v += f32(bias[bias0 + nj]); }
        c[o] = T(v);
    }
}

// An 8 x 8 workgroup; invocation (x, y) owns rows 4 y + {0..3} and 32 + 4 y + {0..3}, columns
// 4 x + {0..3} and 32 + 4 x + {0..3} of the tile: the split halves keep neighbouring invocations
// on neighbouring vec4s of workgroup memory.
@compute @workgroup_size(8, 8)
fn gemm(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) li: u32) {
    let K = p[2];
    let z = 4u * (wid.z + p[12]);
    let a0 = offs[z];
    let b0 = offs[z + 1u];
    let m0 = wid.y * TM;
    let n0 = wid.x * TN;
    // Staging: each invocation fills 4 vec4s of each tile, slots li + 64 s. When k is the
    // contiguous direction in memory, neighbouring invocations take neighbouring k.
    let a_kfast = p[4] == 1u;
    let b_kfast = p[5] == 1u;

    var c00 = vec4<f32>(0.0); var c01 = vec4<f32>(0.0); var c02 = vec4<f32>(0.0); var c03 = vec4<f32>(0.0);
    var c04 = vec4<f32>(0.0); var c05 = vec4<f32>(0.0); var c06 = vec4<f32>(0.0); var c07 = vec4<f32>(0.0);
    var c10 = vec4<f32>(0.0); var c11 = vec4<f32>(0.0); var c12 = vec4<f32>(0.0); var c13 = vec4<f32>(0.0);
    var c14 = vec4<f32>(0.0); var c15 = vec4<f32>(0.0); var c16 = vec4<f32>(0.0); var c17 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < K; k0 += TK) {
        for (var s = 0u; s < 4u; s++) {
            let slot = li + 64u * s;
            let akk = select(slot / 16u, slot % 16u, a_kfast);
            let aq = select(slot % 16u, slot / 16u, a_kfast);
            let m = m0 + 4u * aq;
            let ka = k0 + akk;
            as_[akk * 16u + aq] = vec4<f32>(load_a(a0, m, ka), load_a(a0, m + 1u, ka),
                                            load_a(a0, m + 2u, ka), load_a(a0, m + 3u, ka));
            let bkk = select(slot / 16u, slot % 16u, b_kfast);
            let bq = select(slot % 16u, slot / 16u, b_kfast);
            let n = n0 + 4u * bq;
            let kb = k0 + bkk;
            bs_[bkk * 16u + bq] = vec4<f32>(load_b(b0, kb, n), load_b(b0, kb, n + 1u),
                                            load_b(b0, kb, n + 2u), load_b(b0, kb, n + 3u));
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let x0 = as_[kk * 16u + lid.y];
            let x1 = as_[kk * 16u + lid.y + 8u];
            let y0 = bs_[kk * 16u + lid.x];
            let y1 = bs_[kk * 16u + lid.x + 8u];
            c00 += x0.x * y0; c01 += x0.y * y0; c02 += x0.z * y0; c03 += x0.w * y0;
            c04 += x1.x * y0; c05 += x1.y * y0; c06 += x1.z * y0; c07 += x1.w * y0;
            c10 += x0.x * y1; c11 += x0.y * y1; c12 += x0.z * y1; c13 += x0.w * y1;
            c14 += x1.x * y1; c15 += x1.y * y1; c16 += x1.z * y1; c17 += x1.w * y1;
        }
        workgroupBarrier();
    }

    let c0 = offs[z + 2u];
    let bias0 = offs[z + 3u];
    let r0 = m0 + 4u * lid.y;
    let r1 = r0 + 32u;
    let n = n0 + 4u * lid.x;
    store4(c0, bias0, r0, n, c00); store4(c0, bias0, r0 + 1u, n, c01);
    store4(c0, bias0, r0 + 2u, n, c02); store4(c0, bias0, r0 + 3u, n, c03);
    store4(c0, bias0, r1, n, c04); store4(c0, bias0, r1 + 1u, n, c05);
    store4(c0, bias0, r1 + 2u, n, c06); store4(c0, bias0, r1 + 3u, n, c07);
    store4(c0, bias0, r0, n + 32u, c10); store4(c0, bias0, r0 + 1u, n + 32u, c11);
    store4(c0, bias0, r0 + 2u, n + 32u, c12); store4(c0, bias0, r0 + 3u, n + 32u, c13);
    store4(c0, bias0, r1, n + 32u, c14); store4(c0, bias0, r1 + 1u, n + 32u, c15);
    store4(c0, bias0, r1 + 2u, n + 32u, c16); store4(c0, bias0, r1 + 3u, n + 32u, c17);
}
