// Q6_K: ql[128], qh[64], 16 signed 8-bit scales, f16 d. Value v = 128 h + 32 c + l: the low
// four bits are ql[64 h + 32 (c & 1) + l] (low nibble for c < 2, else high), the top two are
// bits 2c..2c+1 of qh[32 h + l]; x = (d * sc) * (q - 32).
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 210u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    let h = i / 128u;
    let c = (i % 128u) / 32u;
    let l = i % 32u;
    let ql = w_u32(b + 64u * h + 32u * (c & 1u) + l);
    let n = select(ql, ql >> 4u, c >= 2u) & 0x0f0f0f0fu;
    let qh = (w_u32(b + 128u + 32u * h + l) >> (2u * c)) & 0x03030303u;
    let sc = f32(bitcast<i32>(w_byte(b + 192u + i / 16u) << 24u) >> 24u);
    return (w_f16(b + 208u) * sc) * (u8x4(n | (qh << 4u)) - vec4<f32>(32.0));
}
