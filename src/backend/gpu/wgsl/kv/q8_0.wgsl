// The KV cache in Q8_0 (kvType "q8_0"): ggml's blocks of 32 values, each 32 signed bytes and an
// f16 scale (34 bytes), laid out for word access: a layer's buffer holds every value's byte
// first (value n at byte n, so word i holds values 4i..4i+3, as elsewhere element i does), then
// the blocks' scales, two halves per word, from word p.kv_scales. A value is q * d, as ggml's
// dequantize_row_q8_0. Written by kv_store_q8_0.wgsl; see kv/f32.wgsl for the names.
alias kvw = u32;

// Four signed bytes of a word, as f32.
fn q4(w: u32) -> vec4<f32> {
    let s = bitcast<vec4<i32>>(vec4<u32>(w << 24u, w << 16u, w << 8u, w));
    return vec4<f32>(s >> vec4<u32>(24u));
}
fn k4(i: u32) -> vec4<f32> {
    let b = i / 8u;
    return unpack2x16float(kc[p.kv_scales + b / 2u])[b % 2u] * q4(kc[i]);
}
fn v4(i: u32) -> vec4<f32> {
    let b = i / 8u;
    return unpack2x16float(vc[p.kv_scales + b / 2u])[b % 2u] * q4(vc[i]);
}
