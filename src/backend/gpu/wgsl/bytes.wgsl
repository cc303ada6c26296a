// Helpers on u32 words that hold packed bytes (no weight binding needed): prepended to every
// kernel that unpacks quantized weights.

// The four bytes of v as signed values.
fn i8x4(v: u32) -> vec4<f32> {
    return vec4<f32>(vec4<i32>(bitcast<i32>(v << 24u), bitcast<i32>(v << 16u), bitcast<i32>(v << 8u), bitcast<i32>(v)) >> vec4<u32>(24u));
}

// The four bytes of v as unsigned values.
fn u8x4(v: u32) -> vec4<f32> {
    return vec4<f32>(vec4<u32>(v & 0xffu, (v >> 8u) & 0xffu, (v >> 16u) & 0xffu, v >> 24u));
}

// Bits 0..3 of qh moved to bit 4 of bytes 0..3 (the fifth bits of four Q5_0/Q5_1 values).
fn fifth_bits(qh: u32) -> u32 {
    return ((qh & 1u) | ((qh & 2u) << 7u) | ((qh & 4u) << 14u) | ((qh & 8u) << 21u)) << 4u;
}
