// Causal attention of new rows over the KV cache (which already holds them, as kv4: f16 or
// f32). One workgroup per (head, query row); row r sees positions 0..=pos0 + r, so a whole
// prefill is one dispatch. Scores go through a scratch buffer so any context length works.
// Vectors are read four values at a time (head_dim is a multiple of 4, at most 256).
struct P {
    n_head: u32,
    group: u32,      // query heads per KV head
    head_dim: u32,
    kv_dim: u32,
    pos0: u32,
    scale: f32,
    n_ctx: u32,      // scratch row length
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kc: array<kv4>;
@group(0) @binding(3) var<storage, read> vc: array<kv4>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4<f32>>;

var<workgroup> red: array<f32, 64>;
var<workgroup> qh: array<vec4<f32>, 64>;    // this row's query head
var<workgroup> acc4: array<vec4<f32>, 64>;  // partial outputs of the position groups

fn reduce_max(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = max(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    return m;
}

fn reduce_sum(v: f32, lid: u32) -> f32 {
    red[lid] = v;
    workgroupBarrier();
    for (var s = 32u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] += red[lid + s];
        }
        workgroupBarrier();
    }
    let m = red[0];
    workgroupBarrier();
    return m;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let r = wid.y;
    let n_kv = p.pos0 + r + 1u;
    let hd4 = p.head_dim / 4u;
    let kv4s = p.kv_dim / 4u;
    let ko = (h / p.group) * hd4;
    let so = (r * p.n_head + h) * p.n_ctx;
    if (lid < hd4) {
        qh[lid] = q[(r * p.n_head + h) * hd4 + lid];
    }
    workgroupBarrier();

    // Scores: one position per thread.
    var m = -3.0e38;
    for (var j = lid; j < n_kv; j += 64u) {
        var s = 0.0;
        for (var d = 0u; d < hd4; d++) {
            s += dot(qh[d], vec4<f32>(kc[j * kv4s + ko + d]));
        }
        s *= p.scale;
        scores[so + j] = s;
        m = max(m, s);
    }
    m = reduce_max(m, lid);
    var sum = 0.0;
    for (var j = lid; j < n_kv; j += 64u) {
        let e = exp(scores[so + j] - m);
        scores[so + j] = e;
        sum += e;
    }
    storageBarrier();
    sum = reduce_sum(sum, lid);

    // Weighted values: hd4 threads cover the head four values each; the 64 / hd4 groups of them
    // take every (64 / hd4)-th position, so all 64 threads work even for one decode row, and
    // the groups' partial sums are added at the end.
    let groups = 64u / hd4;
    let d = lid % hd4;
    let g = lid / hd4;
    var acc = vec4<f32>(0.0);
    if (g < groups) {
        for (var j = g; j < n_kv; j += groups) {
            acc += scores[so + j] * vec4<f32>(vc[j * kv4s + ko + d]);
        }
    }
    acc4[lid] = acc;
    workgroupBarrier();
    if (lid < hd4) {
        var total = vec4<f32>(0.0);
        for (var i = 0u; i < groups; i++) {
            total += acc4[lid + i * hd4];
        }
        out[(r * p.n_head + h) * hd4 + lid] = total * (1.0 / sum);
    }
}
