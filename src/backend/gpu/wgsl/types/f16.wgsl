// F16: four values (8 bytes) per "block"; unpack2x16float needs no shader-f16.
const QK: u32 = 4u;
const BLOCK_BYTES: u32 = 8u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    return vec4<f32>(unpack2x16float(w_u32(b)), unpack2x16float(w_u32(b + 4u)));
}
