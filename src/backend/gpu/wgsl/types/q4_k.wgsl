// Q4_K: f16 d, f16 dmin, 8 6-bit scale/minimum pairs in 12 bytes, qs[128]. Value v = 64 j + l
// (l < 32) is the low nibble of qs[32 j + l], v + 32 its high nibble; x = d*sc * q - dmin*m.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 144u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    let q = w_u32(b + 16u + 32u * (i / 64u) + i % 32u);
    let n = select(q, q >> 4u, (i % 64u) >= 32u) & 0x0f0f0f0fu;
    let sm = scale_min_k4(b + 4u, i / 32u);
    return (w_f16(b) * f32(sm.x)) * u8x4(n) - w_f16(b + 2u) * f32(sm.y);
}
