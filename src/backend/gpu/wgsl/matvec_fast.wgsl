// Decode matvec for the types with a fast path: y[t, out_row0 + r] = dot(W[r, :], x[t, :]) for
// one chunk of weight rows. The type's file (wgsl/fast/) declares the weight binding `w`, UNIT
// (values one thread handles at a time: a block or a fixed part of one) and
// unit_dot(row byte, unit, k0): the dot of unit `unit` of the row with the staged x, decoding
// the unit's scales once and its quants from whole words.
//
// ROWS weight rows per workgroup, LANES threads per row (a 32-wide SIMD group on most GPUs),
// lanes taking consecutive units so that neighbours read neighbouring bytes. Every row of the
// workgroup reads the same x, so it is staged in workgroup memory XC values at a time (8 KiB:
// half of what WebGPU guarantees) instead of being fetched from storage by each row.
struct P {
    n: u32,          // rows in this chunk
    k: u32,          // row length (values); a multiple of UNIT
    row_bytes: u32,
    out_row0: u32,   // the chunk's first row in the whole weight
    out_stride: u32, // values per output row (the whole weight's rows)
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const ROWS: u32 = 8u;
const LANES: u32 = 32u;
const XC: u32 = 2048u;  // a multiple of every UNIT and of 256 (K-quant blocks never straddle)

var<workgroup> xs: array<vec4<f32>, 512>;  // XC / 4
var<workgroup> part: array<f32, 256>;      // ROWS * LANES

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let lane = lid % LANES;
    let row = (wid.y * nwg.x + wid.x) * ROWS + lid / LANES;
    let xo = wid.z * (p.k / 4u);
    // No early return for rows past the end: every thread must reach the barriers.
    var acc = 0.0;
    for (var k0 = 0u; k0 < p.k; k0 += XC) {
        let n = min(XC, p.k - k0);
        workgroupBarrier();  // the previous chunk is no longer read
        for (var i = lid; i < n / 4u; i += 256u) {
            xs[i] = x[xo + k0 / 4u + i];
        }
        workgroupBarrier();
        if (row < p.n) {
            let u0 = k0 / UNIT;
            for (var u = lane; u < n / UNIT; u += LANES) {
                acc += unit_dot(row * p.row_bytes, u0 + u, k0);
            }
        }
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = LANES / 2u; s > 0u; s >>= 1u) {
        if (lane < s) {
            part[lid] += part[lid + s];
        }
        workgroupBarrier();
    }
    if (lane == 0u && row < p.n) {
        y[wid.z * p.out_stride + p.out_row0 + row] = part[lid];
    }
}
