// Q4_0: f16 scale d, 16 bytes of nibbles; value j < 16 is the low nibble of byte j, value
// j >= 16 the high nibble of byte j - 16; x = d * (q - 8).
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 18u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    let q = w_u32(b + 2u + (i & 15u));
    let n = select(q, q >> 4u, i >= 16u) & 0x0f0f0f0fu;
    return w_f16(b) * (u8x4(n) - vec4<f32>(8.0));
}
