// y[t, row0 + r] = dot(W[r, :], x[t, :]) for one chunk of weight rows (any type: `dequant4` comes
// from the type's file). One workgroup per (row, token); the 64 threads stride over the row.
// The decode path of the types without a kernel in wgsl/fast/ (and the benchmark's baseline).
struct P {
    n: u32,          // rows in this chunk
    k: u32,          // row length (values)
    row_bytes: u32,
    out_row0: u32,   // the chunk's first row in the whole weight
    out_stride: u32, // values per output row (the whole weight's rows)
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

var<workgroup> part: array<f32, 64>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
        @builtin(local_invocation_index) lid: u32) {
    let row = wid.y * nwg.x + wid.x;
    if (row >= p.n) {
        return;
    }
    let t = wid.z;
    let nq = p.k / 4u;
    let xo = t * nq;
    let rb = row * p.row_bytes;
    var acc = 0.0;
    for (var c = lid; c < nq; c += 64u) {
        let i = c * 4u;
        acc += dot(dequant4(rb + (i / QK) * BLOCK_BYTES, i % QK), x[xo + c]);
    }
    part[lid] = acc;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            part[lid] += part[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u) {
        y[t * p.out_stride + p.out_row0 + row] = part[0];
    }
}
