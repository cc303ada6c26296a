// Prefill: y[m, out_row0 + n] = dot(W[n, :], x[m, :]) for every activation row m and every
// weight row n of one chunk, a 64 x 64 tile of outputs per workgroup (any type: `dequant4`
// comes from the type's file). Each step over k stages a 64 x 16 tile of activations and the
// matching 64 x 16 tile of weights, dequantized once (one dequant4 per thread), in workgroup
// memory: each weight is then read from storage once per 64 activation rows instead of once
// per row, which is what makes prefill faster than repeated matvecs. Each thread accumulates a
// 4 x 4 block of outputs from vec4 reads of the tiles.
struct P {
    m: u32,          // activation rows
    n: u32,          // weight rows in this chunk
    k: u32,          // row length (values); a multiple of TK
    row_bytes: u32,
    out_row0: u32,   // the chunk's first row in the whole weight
    out_stride: u32, // values per output row (the whole weight's rows)
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> x: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

// Tiles transposed, [k][row / 4]: a vec4 holds four consecutive rows at one k (4 KiB each).
var<workgroup> xt: array<vec4<f32>, 256>;  // TK * TM / 4
var<workgroup> wt: array<vec4<f32>, 256>;  // TK * TN / 4

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let n0 = wid.x * TN;
    let m0 = wid.y * TM;
    // This thread's outputs: rows m0 + 4 tm + i, columns n0 + 4 tn + j.
    let tn = lid % 16u;
    let tm = lid / 16u;
    // What this thread stages: four values (k0 + lk ..) of row lr of each tile.
    let lr = lid / 4u;
    let lk = (lid % 4u) * 4u;
    var acc: array<vec4<f32>, 4>;
    for (var k0 = 0u; k0 < p.k; k0 += TK) {
        var xv = vec4<f32>(0.0);
        if (m0 + lr < p.m) {
            xv = x[((m0 + lr) * p.k + k0 + lk) / 4u];
        }
        var wv = vec4<f32>(0.0);
        if (n0 + lr < p.n) {
            let i = k0 + lk;
            wv = dequant4((n0 + lr) * p.row_bytes + (i / QK) * BLOCK_BYTES, i % QK);
        }
        workgroupBarrier();  // the previous tiles are no longer read
        for (var c = 0u; c < 4u; c++) {
            xt[(lk + c) * 16u + lr / 4u][lr % 4u] = xv[c];
            wt[(lk + c) * 16u + lr / 4u][lr % 4u] = wv[c];
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let a = xt[kk * 16u + tm];
            let b = wt[kk * 16u + tn];
            acc[0] += a.x * b;
            acc[1] += a.y * b;
            acc[2] += a.z * b;
            acc[3] += a.w * b;
        }
    }
    for (var i = 0u; i < 4u; i++) {
        let m = m0 + 4u * tm + i;
        if (m < p.m) {
            for (var j = 0u; j < 4u; j++) {
                let n = n0 + 4u * tn + j;
                if (n < p.n) {
                    y[m * p.out_stride + p.out_row0 + n] = acc[i][j];
                }
            }
        }
    }
}
