// Prepended to every kernel. Weights are GGUF blocks in u32 words (`w`, declared by the kernel);
// blocks are not 4-byte aligned (Q4_0 is 18 bytes), so fields are read by byte address.

fn w_byte(b: u32) -> u32 {
    return (w[b >> 2u] >> ((b & 3u) * 8u)) & 0xffu;
}

// Two bytes at b (GGUF's f16 fields are 2-byte aligned: they never straddle a word).
fn w_u16(b: u32) -> u32 {
    return (w[b >> 2u] >> ((b & 3u) * 8u)) & 0xffffu;
}

// Four bytes at any byte address.
fn w_u32(b: u32) -> u32 {
    let s = (b & 3u) * 8u;
    if (s == 0u) {
        return w[b >> 2u];
    }
    return (w[b >> 2u] >> s) | (w[(b >> 2u) + 1u] << (32u - s));
}

fn w_f16(b: u32) -> f32 {
    return unpack2x16float(w_u16(b)).x;
}

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

// ggml's get_scale_min_k4: the 6-bit scale and minimum of sub-block g (of 8) of a Q4_K/Q5_K
// block whose 12 scale bytes start at byte s.
fn scale_min_k4(s: u32, g: u32) -> vec2<u32> {
    if (g < 4u) {
        return vec2<u32>(w_byte(s + g) & 63u, w_byte(s + g + 4u) & 63u);
    }
    return vec2<u32>((w_byte(s + g + 4u) & 15u) | ((w_byte(s + g - 4u) >> 6u) << 4u),
                     (w_byte(s + g + 4u) >> 4u) | ((w_byte(s + g) >> 6u) << 4u));
}
