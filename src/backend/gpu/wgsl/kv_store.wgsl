// Write the new rows of k and v (f32 activations) into the layer's KV cache at position pos0,
// converted to the cache's element type (kv4: f16 with shader-f16, else f32). One thread per
// four values of each.
struct P {
    n: u32,          // vec4s in k (and in v)
    at: u32,         // vec4 index of position pos0 in the cache
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> kc: array<kv4>;
@group(0) @binding(4) var<storage, read_write> vc: array<kv4>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.groups_x + gid.x;
    if (i >= p.n) {
        return;
    }
    kc[p.at + i] = kv4(k[i]);
    vc[p.at + i] = kv4(v[i]);
}
