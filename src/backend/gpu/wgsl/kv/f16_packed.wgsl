// The KV cache in f16 (kvType "f16") without shader-f16 (SwiftShader, or f16 turned off): four
// halves in two u32 words, through pack2x16float / unpack2x16float (core WGSL). The same memory
// as kv/f16.wgsl; see kv/f32.wgsl for the names every KV module gives.
alias kvw = vec2<u32>;
fn kv_pack(v: vec4<f32>) -> kvw {
    return kvw(pack2x16float(v.xy), pack2x16float(v.zw));
}
fn kv_unpack(w: kvw) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w.x), unpack2x16float(w.y));
}
fn k4(i: u32) -> vec4<f32> {
    return kv_unpack(kc[i]);
}
fn v4(i: u32) -> vec4<f32> {
    return kv_unpack(vc[i]);
}
