// Q4_1: f16 scale d, f16 minimum m, then 16 bytes of nibbles laid out as Q4_0's; x = d * q + m.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 20u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    let q = w_u32(b + 4u + (i & 15u));
    let n = select(q, q >> 4u, i >= 16u) & 0x0f0f0f0fu;
    return w_f16(b) * u8x4(n) + w_f16(b + 2u);
}
