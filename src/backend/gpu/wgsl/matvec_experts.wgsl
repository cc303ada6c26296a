// The chosen experts' rows only: y[i, r] = dot(W[e * n + r, :], x[i / x_div, :]) for choice i
// (token i / k, its (i % k)-th expert e = route[i]) and the rows of one chunk of the stacked
// expert weight (any type: `dequant4` from the type's file). One workgroup per (row, choice);
// the 64 threads stride over the row. x has a row per token (x_div = k) or per choice (1).
struct P {
    n: u32,          // rows per expert
    k: u32,          // row length (values)
    row_bytes: u32,
    chunk_row0: u32, // the chunk's first row in the whole stacked weight
    chunk_rows: u32,
    x_div: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> route: array<u32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.n) {
        return;
    }
    let i = wid.z;
    let g = route[i] * p.n + row;
    // A row of another chunk computes nothing, but still takes part in the barriers.
    let here = g >= p.chunk_row0 && g < p.chunk_row0 + p.chunk_rows;
    let nq = select(0u, p.k / 4u, here);
    let xo = (i / p.x_div) * nq;
    let rb = (g - p.chunk_row0) * p.row_bytes;
    var acc = 0.0;
    for (var c = lid; c < nq; c += 64u) {
        let j = c * 4u;
        acc += dot(dequant4(rb + (j / QK) * BLOCK_BYTES, j % QK), x[xo + c]);
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            part[lid] += part[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u && here) {
        y[i * p.n + row] = part[0];
    }
}
