// BF16: four values (8 bytes) per "block"; a bf16 is the high half of an f32.
const QK: u32 = 4u;
const BLOCK_BYTES: u32 = 8u;

fn bf16x2(v: u32) -> vec2<f32> {
    return bitcast<vec2<f32>>(vec2<u32>(v << 16u, v & 0xffff0000u));
}

fn dequant4(b: u32, i: u32) -> vec4<f32> {
    return vec4<f32>(bf16x2(w_u32(b)), bf16x2(w_u32(b + 4u)));
}
