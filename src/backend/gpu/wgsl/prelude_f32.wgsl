// Prepended to every kernel when f16 is not available (headless Chromium's SwiftShader) or
// turned off: the same names as prelude_f16.wgsl over u32 types, so kernels are written once.
// F16 weights are unpacked with unpack2x16float (core WGSL), and an f16 KV cache packs halves
// in u32 words the same way (kv/f16_packed.wgsl).

alias h4 = vec2<u32>;
fn h4f(v: h4) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(v.x), unpack2x16float(v.y));
}
