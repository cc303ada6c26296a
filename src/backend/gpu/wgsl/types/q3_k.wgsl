// Q3_K: hmask[32], qs[64], 16 6-bit scales packed in 12 bytes, f16 d. Value v = 128 h + 32 j + l
// is bits 2j..2j+1 of qs[32 h + l], minus 4 unless bit 4h + j of hmask[l] is set;
// x = d*(sc - 32) * q.
const QK: u32 = 256u;
const BLOCK_BYTES: u32 = 110u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    let h = i / 128u;
    let j = (i % 128u) / 32u;
    let l = i % 32u;
    let q = (w_u32(b + 32u + h * 32u + l) >> (2u * j)) & 0x03030303u;
    let hm = (w_u32(b + l) >> (4u * h + j)) & 0x01010101u;
    // Scale g: low four bits from byte g % 8 (nibble g / 8), high two from byte 8 + g % 4.
    let g = i / 16u;
    let lo = (w_byte(b + 96u + g % 8u) >> (4u * (g / 8u))) & 15u;
    let hi = (w_byte(b + 104u + g % 4u) >> (2u * (g / 4u))) & 3u;
    let dl = w_f16(b + 108u) * f32(i32(lo | (hi << 4u)) - 32);
    return dl * (u8x4(q | (hm << 2u)) - vec4<f32>(4.0));
}
