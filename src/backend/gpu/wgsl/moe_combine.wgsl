// out[t, c] = sum over the k choices s of token t, in order, of y[t * k + s, c], each times its
// weight first when `weighted` (llama.cpp: ggml_mul, then ggml_add slot by slot).
struct P {
    n: u32,        // values per row
    rows: u32,     // tokens
    k: u32,
    weighted: u32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> y: array<f32>;
@group(0) @binding(2) var<storage, read> route: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.groups_x + gid.x;
    if (i >= p.n * p.rows) {
        return;
    }
    let t = i / p.n;
    let c = i % p.n;
    var acc = 0.0;
    for (var s = 0u; s < p.k; s++) {
        let ch = t * p.k + s;
        var v = y[ch * p.n + c];
        if (p.weighted != 0u) {
            v *= bitcast<f32>(route[p.rows * p.k + ch]);
        }
        acc += v;
    }
    out[i] = acc;
}
