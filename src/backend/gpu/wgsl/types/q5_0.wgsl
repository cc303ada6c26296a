// Q5_0: f16 scale d, 32 fifth bits qh (bit j belongs to value j), 16 bytes of nibbles laid out
// as Q4_0's; x = d * (q - 16).
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 22u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    let q = w_u32(b + 6u + (i & 15u));
    let n = select(q, q >> 4u, i >= 16u) & 0x0f0f0f0fu;
    return w_f16(b) * (u8x4(n | fifth_bits(w_u32(b + 2u) >> i)) - vec4<f32>(16.0));
}
