// F32: four values (16 bytes) per "block".
const QK: u32 = 4u;
const BLOCK_BYTES: u32 = 16u;

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    let o = b >> 2u;
    return bitcast<vec4<f32>>(vec4<u32>(w[o], w[o + 1u], w[o + 2u], w[o + 3u]));
}
