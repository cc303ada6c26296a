// Prepended to every kernel when the device has shader-f16 (and it is not turned off): F16
// weights are read as f16 vectors, and an f16 KV cache is vec4<f16> (kv/f16.wgsl). Arithmetic
// stays f32: the values are widened as they are read.
enable f16;

// Four F16 weights (8 bytes) and their f32 values.
alias h4 = vec4<f16>;
fn h4f(v: h4) -> vec4<f32> {
    return vec4<f32>(v);
}
