// Q6_K for matvec_fast. Block (210 bytes): ql[128], qh[64], 16 signed 8-bit scales, f16 d;
// value 128 h + 32 c + l takes its low four bits from ql[64 h + 32 (c & 1) + l] (high nibble
// for c >= 2) and its top two from bits 2c..2c+1 of qh[32 h + l]. A unit is (h, 16 l's) for all
// four c: 16 bytes each of two ql runs and of qh give 64 values in four runs of 16, each run
// with one scale. Blocks start at byte 0 or 2 of a word: runs are read as whole words and
// shifted into place.
@group(0) @binding(1) var<storage, read> w: array<u32>;

const UNIT: u32 = 64u;

// The 16 bytes at even byte address b.
fn ld16(b: u32) -> vec4<u32> {
    let o = b >> 2u;
    let v = vec4<u32>(w[o], w[o + 1u], w[o + 2u], w[o + 3u]);
    let n = vec4<u32>(v.yzw, w[o + 4u]);
    return select(v, (v >> vec4<u32>(16u)) | (n << vec4<u32>(16u)), (b & 2u) != 0u);
}

fn unit_dot(rb: u32, u: u32, k0: u32) -> f32 {
    let blk = u / 4u;
    let h = (u % 4u) / 2u;
    let l0 = 16u * (u % 2u);
    let b = rb + blk * 210u;
    let qa = ld16(b + 64u * h + l0);        // c = 0 (low nibbles), c = 2 (high)
    let qb = ld16(b + 64u * h + 32u + l0);  // c = 1, c = 3
    let qh = ld16(b + 128u + 32u * h + l0);
    let m4 = vec4<u32>(0x0f0f0f0fu);
    let m2 = vec4<u32>(0x03030303u);
    let q0 = (qa & m4) | ((qh & m2) << vec4<u32>(4u));
    let q1 = (qb & m4) | (((qh >> vec4<u32>(2u)) & m2) << vec4<u32>(4u));
    let q2 = ((qa >> vec4<u32>(4u)) & m4) | (((qh >> vec4<u32>(4u)) & m2) << vec4<u32>(4u));
    let q3 = ((qb >> vec4<u32>(4u)) & m4) | (((qh >> vec4<u32>(6u)) & m2) << vec4<u32>(4u));
    // Scales of the four runs: bytes 8h + 2c + l0/16 of the scales; d after them.
    let sd = ld16(b + 192u);  // scales[0..16]
    let dw = (w[(b + 208u) >> 2u] >> (8u * ((b + 208u) & 3u))) & 0xffffu;
    let g = 8u * h + l0 / 16u;
    let sc = vec4<f32>(i8x4(sd[g / 4u] >> (8u * (g % 4u))).x,
                       i8x4(sd[(g + 2u) / 4u] >> (8u * ((g + 2u) % 4u))).x,
                       i8x4(sd[(g + 4u) / 4u] >> (8u * ((g + 4u) % 4u))).x,
                       i8x4(sd[(g + 6u) / 4u] >> (8u * ((g + 6u) % 4u))).x);
    let xi = (blk * 256u + 128u * h + l0 - k0) / 4u;
    let m32 = vec4<f32>(32.0);
    var s = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        s += vec4<f32>(dot(u8x4(q0[i]) - m32, xs[xi + i]),
                       dot(u8x4(q1[i]) - m32, xs[xi + 8u + i]),
                       dot(u8x4(q2[i]) - m32, xs[xi + 16u + i]),
                       dot(u8x4(q3[i]) - m32, xs[xi + 24u + i]));
    }
    return unpack2x16float(dw).x * dot(sc, s);
}
