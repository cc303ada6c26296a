// Q8_0 for matvec_fast: one block (32 values, 34 bytes: f16 d, 32 signed bytes) per unit.
// Blocks start at byte 0 or 2 of a word; each quant word is joined from two whole words.
@group(0) @binding(1) var<storage, read> w: array<u32>;

const UNIT: u32 = 32u;

fn unit_dot(rb: u32, u: u32, k0: u32) -> f32 {
    let b = rb + u * 34u;
    let o = b >> 2u;
    let odd = (b & 2u) != 0u;
    var prev = w[o];
    let d = unpack2x16float(select(prev, prev >> 16u, odd)).x;
    let xi = (u * UNIT - k0) / 4u;
    var s = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let next = w[o + 1u + i];
        let q = select((prev >> 16u) | (next << 16u), next, odd);
        s += dot(i8x4(q), xs[xi + i]);
        prev = next;
    }
    return d * s;
}
