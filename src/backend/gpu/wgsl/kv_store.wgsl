// Write the new rows of k and v (f32 activations) into the layer's KV cache at position pos0,
// converted to the cache's element type (`kvw`, `kv_pack` from the kv/*.wgsl module of the
// cache's type: f32, f16, or f16 packed in u32 words). One thread per four values of each.
// (A Q8_0 cache is written by kv_store_q8_0.wgsl.)
struct P {
    n: u32,          // vec4s in k (and in v)
    at: u32,         // element index of position pos0 in the cache
    groups_x: u32,
    kv_scales: u32,  // unused here (see kv/q8_0.wgsl)
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> kc: array<kvw>;
@group(0) @binding(4) var<storage, read_write> vc: array<kvw>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.groups_x + gid.x;
    if (i >= p.n) {
        return;
    }
    kc[p.at + i] = kv_pack(k[i]);
    vc[p.at + i] = kv_pack(v[i]);
}
