// Q5_K: Q4_K's header, qh[32], qs[128]. Value v = 64 j + l (l < 32) is the low nibble of
// qs[32 j + l] with fifth bit 2j of qh[l], v + 32 the high nibble with bit 2j + 1.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 176u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    let hi = (i % 64u) >= 32u;
    let q = w_u32(b + 48u + 32u * (i / 64u) + i % 32u);
    let n = select(q, q >> 4u, hi) & 0x0f0f0f0fu;
    let h = (w_u32(b + 16u + i % 32u) >> (2u * (i / 64u) + select(0u, 1u, hi))) & 0x01010101u;
    let sm = scale_min_k4(b + 4u, i / 32u);
    return (w_f16(b) * f32(sm.x)) * u8x4(n | (h << 4u)) - w_f16(b + 2u) * f32(sm.y);
}
