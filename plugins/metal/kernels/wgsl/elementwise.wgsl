// Shared elementwise helpers (see kaffa_metal.kernels.elementwise).
//
// sum_to / sum_to_wg: dst[o] = sum over j < red of src at flat index o * red + j of the permuted
// view described by p[2..] (kaffa.launch.transpose_geometry: [ndim, dims..., strides...]), i.e. a
// float32 array of a broadcast shape summed down to an input's shape. p = [kept, red, geometry...].

@group(0) @binding(0) var<storage, read> src: array<f32>;
@group(0) @binding(1) var<storage, read_write> dst: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;

// Offset into src of flat index i of the permuted view.
fn offset(i: u32) -> u32 {
    let nd = p[2];
    var r = i;
    var off = 0u;
    for (var d = nd; d > 0u; d--) {
        let dim = p[2u + d];
        off += (r % dim) * p[2u + nd + d];
        r /= dim;
    }
    return off;
}

@compute @workgroup_size(WG)
fn sum_to(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = flat_index(gid, nwg);
    if (o >= p[0]) { return; }
    let red = p[1];
    var acc = 0.0;
    for (var j = 0u; j < red; j++) { acc += src[offset(o * red + j)]; }
    dst[o] = T(acc);
}

var<workgroup> partial: array<f32, WG>;

@compute @workgroup_size(WG)
fn sum_to_wg(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
             @builtin(num_workgroups) nwg: vec3<u32>) {
    let o = wid.x + wid.y * nwg.x;  // one workgroup per output element
    if (o >= p[0]) { return; }
    let red = p[1];
    var acc = 0.0;
    for (var j = l; j < red; j += WG) { acc += src[offset(o * red + j)]; }
    partial[l] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) { partial[l] += partial[l + s]; }
        workgroupBarrier();
    }
    if (l == 0u) { dst[o] = T(partial[0]); }
}
