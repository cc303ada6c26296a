// Multiply every n consecutive values (n a power of two) by the orthonormal Walsh-Hadamard
// matrix in place, as ggml's CPU backend does (ggml_compute_forward_fwht): each value times
// 1/sqrt(n), then butterflies (u + v, u - v) of width 1, 2, 4, ... One thread per group of n:
// llama.cpp rotates queries, keys, values and the attention output this way around a quantized
// KV cache (KvType::rotation).
struct P {
    groups: u32,     // groups of n values in x
    n: u32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.y * p.groups_x + gid.x;
    if (g >= p.groups) {
        return;
    }
    let base = g * p.n;
    let scale = 1.0 / sqrt(f32(p.n));
    for (var i = 0u; i < p.n; i++) {
        x[base + i] *= scale;
    }
    for (var len = 1u; len < p.n; len *= 2u) {
        for (var i = 0u; i < p.n; i += 2u * len) {
            for (var j = 0u; j < len; j++) {
                let u = x[base + i + j];
                let v = x[base + i + len + j];
                x[base + i + j] = u + v;
                x[base + i + len + j] = u - v;
            }
        }
    }
}
