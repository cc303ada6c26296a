// Q2_K: scales[16] (low nibble scale, high nibble minimum, per 16 values), qs[64], f16 d, f16
// dmin. Value v = 128 h + 32 j + l is bits 2j..2j+1 of qs[32 h + l]; x = d*sc * q - dmin*m
// (ggml's float order: both products first).
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 84u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    let j = (i % 128u) / 32u;
    let q = (w_u32(b + 16u + (i / 128u) * 32u + i % 32u) >> (2u * j)) & 0x03030303u;
    let s = w_byte(b + i / 16u);
    let dl = w_f16(b + 80u) * f32(s & 15u);
    let ml = w_f16(b + 82u) * f32(s >> 4u);
    return dl * u8x4(q) - ml;
}
