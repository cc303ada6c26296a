// Prepended (after bytes.wgsl) to the kernels generic over the weight type (matvec, matmul,
// embed). Weights are GGUF blocks in u32 words (`w`, declared by the kernel); blocks are not
// 4-byte aligned (Q4_0 is 18 bytes), so the types' dequant4 reads fields by byte address.

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

// ggml's get_scale_min_k4: the 6-bit scale and minimum of sub-block g (of 8) of a Q4_K/Q5_K
// block whose 12 scale bytes start at byte s.
fn scale_min_k4(s: u32, g: u32) -> vec2<u32> {
    if (g < 4u) {
        return vec2<u32>(w_byte(s + g) & 63u, w_byte(s + g + 4u) & 63u);
    }
    return vec2<u32>((w_byte(s + g + 4u) & 15u) | ((w_byte(s + g - 4u) >> 6u) << 4u),
                     (w_byte(s + g + 4u) >> 4u) | ((w_byte(s + g) >> 6u) << 4u));
}
