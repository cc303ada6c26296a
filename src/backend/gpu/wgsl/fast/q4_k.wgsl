// Q4_K for matvec_fast. A 144-byte block is nine 16-byte words and rows are whole blocks, so
// the weights are read as vec4<u32>: word 0 holds d, dmin and the 12 scale bytes, words 1..8
// the nibbles. A unit is 64 values: 32 bytes of nibbles (two words), whose low nibbles are
// sub-block 2j and high nibbles sub-block 2j + 1; the unit decodes those two scale/minimum
// pairs once and applies them to the two sums (x = d*sc*q - dmin*m, summed apart).
@group(0) @binding(1) var<storage, read> w: array<vec4<u32>>;

const UNIT: u32 = 64u;

// Byte i of the 12 scale bytes.
fn sbyte(s: vec3<u32>, i: u32) -> u32 {
    return (s[i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

// ggml's get_scale_min_k4 for sub-block g, as floats.
fn scale_min(s: vec3<u32>, g: u32) -> vec2<f32> {
    if (g < 4u) {
        return vec2<f32>(f32(sbyte(s, g) & 63u), f32(sbyte(s, g + 4u) & 63u));
    }
    return vec2<f32>(f32((sbyte(s, g + 4u) & 15u) | ((sbyte(s, g - 4u) >> 6u) << 4u)),
                     f32((sbyte(s, g + 4u) >> 4u) | ((sbyte(s, g) >> 6u) << 4u)));
}

fn unit_dot(rb: u32, u: u32, k0: u32) -> f32 {
    let o = rb / 16u + (u / 4u) * 9u;
    let j = u % 4u;
    let head = w[o];
    let dm = unpack2x16float(head.x);
    let lo_sm = scale_min(head.yzw, 2u * j);
    let hi_sm = scale_min(head.yzw, 2u * j + 1u);
    let xi = (u * UNIT - k0) / 4u;
    let m4 = vec4<u32>(0x0f0f0f0fu);
    var q_lo = 0.0;
    var q_hi = 0.0;
    var x_lo = vec4<f32>(0.0);
    var x_hi = vec4<f32>(0.0);
    for (var h = 0u; h < 2u; h++) {
        let q = w[o + 1u + 2u * j + h];
        let lo = q & m4;
        let hi = (q >> vec4<u32>(4u)) & m4;
        for (var i = 0u; i < 4u; i++) {
            let xl = xs[xi + 4u * h + i];
            let xh = xs[xi + 8u + 4u * h + i];
            q_lo += dot(u8x4(lo[i]), xl);
            q_hi += dot(u8x4(hi[i]), xh);
            x_lo += xl;
            x_hi += xh;
        }
    }
    let one = vec4<f32>(1.0);
    return dm.x * (lo_sm.x * q_lo + hi_sm.x * q_hi) - dm.y * (lo_sm.y * dot(x_lo, one) + hi_sm.y * dot(x_hi, one));
}
