// The KV cache in f32 (kvType "f32"): one vec4<f32> per four values. Every KV module names the
// cache element `kvw` and reads four values at element index i of the layer's keys or values
// (`kc`, `vc`, declared by the kernel) with k4 / v4; kv_store.wgsl writes them with kv_pack.
alias kvw = vec4<f32>;
fn kv_pack(v: vec4<f32>) -> kvw {
    return v;
}
fn k4(i: u32) -> vec4<f32> {
    return kc[i];
}
fn v4(i: u32) -> vec4<f32> {
    return vc[i];
}
