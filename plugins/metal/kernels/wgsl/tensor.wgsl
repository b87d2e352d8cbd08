// Tensor family (see kaffa_metal.kernels.tensor). Data movement is built for a raw T: u32 moves any
// 32-bit item as bits, f16 any 16-bit item. copy and zero work on whole u32 words (a buffer is
// padded to 4 bytes), so one build serves every dtype. tile_gradient and sparse_to_dense add: they
// are built for the real T (A: f32 for f16). Indices are i32. One invocation per output element.

// -- moves: dst from src, p = [n, ...] ----------------------------------------------------------

@group(0) @binding(0) var<storage, read> src: array<T>;
@group(0) @binding(1) var<storage, read_write> dst: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

// p = [n, base, nd, dims..., strides...] (kaffa.launch.transpose_geometry after [n, base]): the
// offset of flat index i of the strided view.
fn strided(i: u32) -> u32 {
    let nd = p[2];
    var r = i;
    var off = p[1];
    for (var d = nd; d > 0u; d--) {
        let dim = p[2u + d];
        off += (r % dim) * p[2u + nd + d];
        r /= dim;
    }
    return off;
}

@compute @workgroup_size(WG)
fn copy(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    dst[i] = src[i];
}

// Transpose, Slice, Tile (a zero stride repeats the block).
@compute @workgroup_size(WG)
fn strided_read(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    dst[i] = src[strided(i)];
}

// The inverse: SliceGradient places dY into zeros.
@compute @workgroup_size(WG)
fn strided_write(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    dst[strided(i)] = src[i];
}

// Concat/Split, p = [n, block, row, off]: one part is `block` contiguous elements per outer row of
// the joined tensor, whose rows have `row` elements; the part starts at `off` in each row.
@compute @workgroup_size(WG)
fn concat_part(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let o = i / p[1];
    dst[o * p[2] + p[3] + (i - o * p[1])] = src[i];
}

@compute @workgroup_size(WG)
fn split_part(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let o = i / p[1];
    dst[i] = src[o * p[2] + p[3] + (i - o * p[1])];
}

// Typed. dX[o, j] = sum over t of dY[o, t, j], p = [n, tiles, m] (m: the tiled block).
@compute @workgroup_size(WG)
fn tile_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let tiles = p[1];
    let m = p[2];
    let o = i / m;
    let base = o * tiles * m + (i - o * m);
    var acc = A(0);
    for (var t = 0u; t < tiles; t++) { acc += A(src[base + t * m]); }
    dst[i] = T(acc);
}

// -- zero: z_y = 0, z_p = [n] ------------------------------------------------------------------

@group(0) @binding(0) var<storage, read_write> z_y: array<T>;
@group(0) @binding(1) var<storage, read> z_p: array<u32>;

@compute @workgroup_size(WG)
fn zero(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= z_p[0]) { return; }
    z_y[i] = T(0);
}

// -- Gather along axis 0, g_p = [n, rows, inner] -----------------------------------------------

@group(0) @binding(0) var<storage, read> g_data: array<T>;
@group(0) @binding(1) var<storage, read> g_idx: array<i32>;
@group(0) @binding(2) var<storage, read_write> g_y: array<T>;
@group(0) @binding(3) var<storage, read> g_p: array<u32>;

@compute @workgroup_size(WG)
fn gather(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    let inner = g_p[2];
    let k = i / inner;
    let j = g_idx[k];
    // An index out of range writes 0 rather than reading out of bounds (the host reports it).
    if (j < 0 || u32(j) >= g_p[1]) {
        g_y[i] = T(0);
    } else {
        g_y[i] = g_data[u32(j) * inner + (i - k * inner)];
    }
}

// -- [min, max] of n indices into r_out, by one workgroup, r_p = [n] --------------------------

@group(0) @binding(0) var<storage, read> r_idx: array<i32>;
@group(0) @binding(1) var<storage, read_write> r_out: array<i32>;
@group(0) @binding(2) var<storage, read> r_p: array<u32>;

var<workgroup> lo: array<i32, WG>;
var<workgroup> hi: array<i32, WG>;

@compute @workgroup_size(WG)
fn index_range(@builtin(local_invocation_index) l: u32) {
    var a = 2147483647;
    var b = -2147483647 - 1;
    for (var i = l; i < r_p[0]; i += WG) {
        a = min(a, r_idx[i]);
        b = max(b, r_idx[i]);
    }
    lo[l] = a;
    hi[l] = b;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) {
            lo[l] = min(lo[l], lo[l + s]);
            hi[l] = max(hi[l], hi[l + s]);
        }
        workgroupBarrier();
    }
    if (l == 0u) {
        r_out[0] = lo[0];
        r_out[1] = hi[0];
    }
}

// -- Typed. s_y[r, c] = sum of values[k, c] over the k with idx[k] == r, in k order: deterministic,
// no atomics (WGSL has none for floats), at the cost of a scan of the indices per output.
// s_p = [n, nidx, inner].

@group(0) @binding(0) var<storage, read> s_idx: array<i32>;
@group(0) @binding(1) var<storage, read> s_values: array<T>;
@group(0) @binding(2) var<storage, read_write> s_y: array<T>;
@group(0) @binding(3) var<storage, read> s_p: array<u32>;

@compute @workgroup_size(WG)
fn sparse_to_dense(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= s_p[0]) { return; }
    let inner = s_p[2];
    let r = i32(i / inner);
    let c = i % inner;
    var acc = A(0);
    for (var k = 0u; k < s_p[1]; k++) {
        if (s_idx[k] == r) { acc += A(s_values[k * inner + c]); }
    }
    s_y[i] = T(acc);
}
