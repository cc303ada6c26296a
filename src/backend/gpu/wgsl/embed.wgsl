// out[t, :] = dequantized row ids[t] of the table, for the ids that fall in this chunk of rows.
// One thread per four values.
struct P {
    n_tokens: u32,
    k: u32,          // row length (values)
    row_bytes: u32,
    row0: u32,       // the chunk's first row
    n_rows: u32,     // rows in the chunk
    groups_x: u32,   // threads per grid row (the dispatch is 2-D when large)
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> w: array<u32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.y * p.groups_x + gid.x;
    let nq = p.k / 4u;
    if (g >= p.n_tokens * nq) {
        return;
    }
    let t = g / nq;
    let i = (g % nq) * 4u;
    let id = ids[t];
    if (id < p.row0 || id >= p.row0 + p.n_rows) {
        return;
    }
    out[g] = dequant4((id - p.row0) * p.row_bytes + (i / QK) * BLOCK_BYTES, i % QK);
}
