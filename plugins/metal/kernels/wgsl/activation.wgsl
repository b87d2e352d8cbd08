// Activations and their gradients: one invocation per element. Bindings: inputs, output, params.

@group(0) @binding(0) var<storage, read> x: array<T>;
@group(0) @binding(1) var<storage, read_write> y: array<T>;
@group(0) @binding(2) var<storage, read> p: array<u32>;  // [n]

@compute @workgroup_size(WG)
fn relu(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = T(max(A(x[i]), A(0)));
}

@group(0) @binding(0) var<storage, read> g_y: array<T>;
@group(0) @binding(1) var<storage, read> g_dy: array<T>;
@group(0) @binding(2) var<storage, read_write> g_dx: array<T>;
@group(0) @binding(3) var<storage, read> g_p: array<u32>;  // [n]

@compute @workgroup_size(WG)
fn relu_gradient(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= g_p[0]) { return; }
    g_dx[i] = select(T(0), g_dy[i], A(g_y[i]) > A(0));
}
