// Q8_0: f16 scale d, 32 signed bytes; x = d * q.
const QK: u32 = 32u;
const BLOCK_BYTES: u32 = 34u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    return w_f16(b) * i8x4(w_u32(b + 2u + i));
}
