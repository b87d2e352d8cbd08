// Fillers (see kaffa_metal.kernels.fill). value_fill is built with T = u32 and writes whole words
// (a 16-bit value comes packed twice per word; buffers are padded to 4 bytes). The random fillers,
// built for the output's T, draw uniform01(seed, stream, index): a sample depends only on the op's
// seed, the run number (stream) and its position, never on the launch geometry.

@group(0) @binding(0) var<storage, read_write> y: array<T>;
@group(0) @binding(1) var<storage, read> p: array<u32>;  // [n, args...], floats as f32 bits

fn arg(k: u32) -> f32 { return bitcast<f32>(p[k]); }

// p = [words, word]
@compute @workgroup_size(WG)
fn value_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    y[i] = T(p[1]);
}

// Counter-based random numbers (a 32-bit hash of seed, stream and index), as the opencl backend's
// kaffa_uniform01: reproducible whatever the launch geometry. Not cryptographic.
fn hash(v: u32) -> u32 {
    var x = v;
    x ^= x >> 16u;
    x *= 0x7feb352du;
    x ^= x >> 15u;
    x *= 0x846ca68bu;
    x ^= x >> 16u;
    return x;
}

fn uniform01(seed: u32, stream: u32, i: u32) -> f32 {
    let h = hash(hash(seed ^ hash(stream + 0x9e3779b9u)) ^ i);
    return (f32(h >> 8u) + 0.5) * (1.0 / 16777216.0);  // (0, 1)
}

// lo + (hi - lo) * u clamped to [cmin, cmax]: the host passes bounds already rounded to the output
// dtype, so storing cannot round a sample out of them. p = [n, seed, stream, lo, hi, cmin, cmax].
@compute @workgroup_size(WG)
fn uniform_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let u = uniform01(p[1], p[2], i);
    y[i] = T(clamp(arg(3) + (arg(4) - arg(3)) * u, arg(5), arg(6)));
}

// Box-Muller: invocation q turns uniforms 2q, 2q + 1 into normal samples 2q and 2q + 1.
// p = [n, seed, stream, mean, std].
@compute @workgroup_size(WG)
fn gaussian_fill(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>) {
    let i = 2u * flat_index(gid, nwg);
    if (i >= p[0]) { return; }
    let r = sqrt(-2.0 * log(uniform01(p[1], p[2], i)));
    let t = 6.2831853 * uniform01(p[1], p[2], i + 1u);
    y[i] = T(arg(3) + arg(4) * r * cos(t));
    if (i + 1u < p[0]) { y[i + 1u] = T(arg(3) + arg(4) * r * sin(t)); }
}
