// Optimizer updates: elementwise in f32, rounded once on store, into new buffers (the planner
// binds them in place). L is the type of the one-element lr input (float32 from LearningRate may
// drive float16 parameters); NESTEROV a per-op switch. Scalars come as f32 bits, rounded on the
// host where the cpu kernel's numpy arithmetic rounds them (e.g. 1 + momentum).

// p = [n, momentum, 1 + momentum]
@group(0) @binding(0) var<storage, read> ms_g: array<T>;
@group(0) @binding(1) var<storage, read> ms_m: array<T>;
@group(0) @binding(2) var<storage, read> ms_lr: array<L>;
@group(0) @binding(3) var<storage, read> ms_p: array<T>;
@group(0) @binding(4) var<storage, read_write> ms_g_out: array<T>;
@group(0) @binding(5) var<storage, read_write> ms_m_out: array<T>;
@group(0) @binding(6) var<storage, read_write> ms_p_out: array<T>;
@group(0) @binding(7) var<storage, read> ms_q: array<u32>;

@compute @workgroup_size(WG)
fn momentum_sgd(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= ms_q[0]) { return; }
    let momentum = bitcast<f32>(ms_q[1]);
    let mi = f32(ms_m[i]);
    let mn = f32(ms_lr[0]) * f32(ms_g[i]) + momentum * mi;
    var gn = mn;
    if (NESTEROV) { gn = bitcast<f32>(ms_q[2]) * mn - momentum * mi; }
    ms_g_out[i] = T(gn);
    ms_m_out[i] = T(mn);
    ms_p_out[i] = T(f32(ms_p[i]) - gn);
}

// p = [n, epsilon, decay]
@group(0) @binding(0) var<storage, read> ag_p: array<T>;
@group(0) @binding(1) var<storage, read> ag_m: array<T>;
@group(0) @binding(2) var<storage, read> ag_g: array<T>;
@group(0) @binding(3) var<storage, read> ag_lr: array<L>;
@group(0) @binding(4) var<storage, read_write> ag_p_out: array<T>;
@group(0) @binding(5) var<storage, read_write> ag_m_out: array<T>;
@group(0) @binding(6) var<storage, read> ag_q: array<u32>;

@compute @workgroup_size(WG)
fn adagrad(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= ag_q[0]) { return; }
    let gi = f32(ag_g[i]);
    let h = bitcast<f32>(ag_q[2]) * f32(ag_m[i]) + gi * gi;
    ag_p_out[i] = T(f32(ag_p[i]) + f32(ag_lr[0]) * gi / (sqrt(h) + bitcast<f32>(ag_q[1])));
    ag_m_out[i] = T(h);
}
