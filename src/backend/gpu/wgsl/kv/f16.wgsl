// The KV cache in f16 (kvType "f16") where the device has shader-f16: one vec4<f16> per four
// values (see kv/f32.wgsl for the names every KV module gives). Arithmetic stays f32.
alias kvw = vec4<f16>;
fn kv_pack(v: vec4<f32>) -> kvw {
    return kvw(v);
}
fn k4(i: u32) -> vec4<f32> {
    return vec4<f32>(kc[i]);
}
fn v4(i: u32) -> vec4<f32> {
    return vec4<f32>(vc[i]);
}
