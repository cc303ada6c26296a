// Q4_0 for matvec_fast: one block (32 values, 18 bytes: f16 d, 16 bytes of nibbles) per unit.
// Blocks start at byte 0 or 2 of a word; the block's five words are read whole and shifted
// into place, so the inner loop works on words, never on single bytes.
@group(0) @binding(1) var<storage, read> w: array<u32>;

const UNIT: u32 = 32u;

fn unit_dot(rb: u32, u: u32, k0: u32) -> f32 {
    let b = rb + u * 18u;
    let o = b >> 2u;
    let odd = (b & 2u) != 0u;  // the block starts mid-word
    let w0 = w[o];
    let next = vec4<u32>(w[o + 1u], w[o + 2u], w[o + 3u], w[o + 4u]);
    let d = unpack2x16float(select(w0, w0 >> 16u, odd)).x;
    // qs word i: bytes 4i..4i+3, low nibbles are values 4i.., high nibbles values 16 + 4i...
    let qs = select((vec4<u32>(w0, next.xyz) >> vec4<u32>(16u)) | (next << vec4<u32>(16u)), next, odd);
    let lo = qs & vec4<u32>(0x0f0f0f0fu);
    let hi = (qs >> vec4<u32>(4u)) & vec4<u32>(0x0f0f0f0fu);
    let xi = (u * UNIT - k0) / 4u;
    let m8 = vec4<f32>(8.0);
    var s = 0.0;
    for (var i = 0u; i < 4u; i++) {
        s += dot(u8x4(lo[i]) - m8, xs[xi + i]) + dot(u8x4(hi[i]) - m8, xs[xi + 4u + i]);
    }
    return d * s;
}
