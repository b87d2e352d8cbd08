// Row reductions and their broadcasting inverses (see kaffa_metal.kernels.reduce). Every pipeline
// of this file is built with KIND (0 sum, 1 max, 2 dot: sum of x * x2) and O (the output type).
//
// A reduction is `kept` output rows of `red` elements. Where they lie in X is given by the
// geometry g = [nk, kept dims..., kept strides..., nr, reduced dims..., reduced strides...]
// (reduce.reduce_geometry), so reduced axes need not trail: no transpose copy. Sums accumulate
// in A (f32 for f16); the result is stored as O(r / div). p = [kept, red, div, g...].

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read> x2: array<T>;  // dot only; else bound to x
@group(0) @binding(2) var<storage, read_write> y: array<O>;
@group(0) @binding(3) var<storage, read> p: array<u32>;

// Offset of flat index idx over the geometry part [nd, dims..., strides...] starting at p[base].
fn geo_offset(base: u32, idx: u32) -> u32 {
    let nd = p[base];
    if (nd == 1u) { return idx * p[base + 2u]; }  // the common case needs no division
    var r = idx;
    var off = 0u;
    for (var d = nd; d > 0u; d--) {
        let dim = p[base + d];
        off += (r % dim) * p[base + nd + d];
        r /= dim;
    }
    return off;
}

fn load(o: u32) -> A {
    if (KIND == 2) { return A(x[o]) * A(x2[o]); }
    return A(x[o]);
}

fn combine(r: A, v: A) -> A {
    if (KIND == 1) { return max(r, v); }
    return r + v;
}

// The start value: 0, or for max any element of the row (red >= 1 is checked on the host).
fn init(base: u32) -> A {
    if (KIND == 1) { return load(base); }
    return A(0);
}

fn red_base() -> u32 { return 4u + 2u * p[3]; }  // where the reduced part of g starts

fn finish(row: u32, r: A) { y[row] = O(r / A(bitcast<f32>(p[2]))); }

// One invocation per output row: for many rows.
@compute @workgroup_size(WG)
fn rows(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = flat_index(gid, nwg);
    if (row >= p[0]) { return; }
    let base = geo_offset(3u, row);
    let rb = red_base();
    var r = init(base);
    for (var j = 0u; j < p[1]; j++) { r = combine(r, load(base + geo_offset(rb, j))); }
    finish(row, r);
}

var<workgroup> partial: array<A, WG>;

// One workgroup per output row, a tree in workgroup memory: for few, long rows (SumElements).
@compute @workgroup_size(WG)
fn groups(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) l: u32,
          @builtin(num_workgroups) nwg: vec3<u32>) {
    let row = wid.x + wid.y * nwg.x;
    if (row >= p[0]) { return; }  // uniform over the workgroup
    let base = geo_offset(3u, row);
    let rb = red_base();
    var r = init(base);
    for (var j = l; j < p[1]; j += WG) { r = combine(r, load(base + geo_offset(rb, j))); }
    partial[l] = r;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (l < s) { partial[l] = combine(partial[l], partial[l + s]); }
        workgroupBarrier();
    }
    if (l == 0u) { finish(row, partial[0]); }
}

// -- gradients: dY (and Y) broadcast back to X's shape ------------------------------------------
// q = [n, ndim, dims..., strides of dY (and Y)...] (kaffa.launch.broadcast_geometry(X, kept)).

@group(0) @binding(0) var<storage, read> ex_dy: array<T>;
@group(0) @binding(1) var<storage, read_write> ex_dx: array<T>;
@group(0) @binding(2) var<storage, read> ex_q: array<u32>;  // [n, div, geometry...]

fn ex_offset(i: u32) -> u32 {
    let nd = ex_q[2];
    if (nd == 1u) { return i * ex_q[4]; }
    var r = i;
    var off = 0u;
    for (var d = nd; d > 0u; d--) {
        let dim = ex_q[2u + d];
        off += (r % dim) * ex_q[2u + nd + d];
        r /= dim;
    }
    return off;
}

// dX = dY / div at every element of its reduced row (ReduceSum/MeanGradient, SumElementsGradient).
@compute @workgroup_size(WG)
fn expand(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= ex_q[0]) { return; }
    ex_dx[i] = T(A(ex_dy[ex_offset(i)]) / A(bitcast<f32>(ex_q[1])));
}

@group(0) @binding(0) var<storage, read> mg_dy: array<T>;
@group(0) @binding(1) var<storage, read> mg_x: array<T>;
@group(0) @binding(2) var<storage, read> mg_y: array<T>;
@group(0) @binding(3) var<storage, read_write> mg_dx: array<T>;
@group(0) @binding(4) var<storage, read> mg_q: array<u32>;  // [n, geometry...]

fn mg_offset(i: u32) -> u32 {
    let nd = mg_q[1];
    if (nd == 1u) { return i * mg_q[3]; }
    var r = i;
    var off = 0u;
    for (var d = nd; d > 0u; d--) {
        let dim = mg_q[1u + d];
        off += (r % dim) * mg_q[1u + nd + d];
        r /= dim;
    }
    return off;
}

// ReduceMaxGradient: dX = X == Y ? dY : 0 (every tie gets dY).
@compute @workgroup_size(WG)
fn max_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= mg_q[0]) { return; }
    let o = mg_offset(i);
    mg_dx[i] = select(T(0), mg_dy[o], mg_x[i] == mg_y[o]);
}
