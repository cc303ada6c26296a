// F16 for matvec_fast: eight values (16 bytes) per unit, read as two h4 (vec4<f16> with
// shader-f16, else two u32 words unpacked; see the preludes). Rows are 16-byte aligned: the
// dispatch sends rows whose length is not a multiple of 8 to the generic matvec.
@group(0) @binding(1) var<storage, read> w: array<h4>;

const UNIT: u32 = 8u;

fn unit_dot(rb: u32, u: u32, k0: u32) -> f32 {
    let e = rb / 8u + 2u * u;
    let xi = (u * UNIT - k0) / 4u;
    return dot(h4f(w[e]), xs[xi]) + dot(h4f(w[e + 1u]), xs[xi + 1u]);
}
