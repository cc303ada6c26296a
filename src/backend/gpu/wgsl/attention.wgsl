// Causal attention of new rows over the KV cache (which already holds them). One workgroup per
// (head, query row); row r sees positions 0..=pos0 + r. Scores go through a scratch buffer so
// any context length works.
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
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read_write> scores: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

var<workgroup> red: array<f32, 64>;

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
    let qo = (r * p.n_head + h) * p.head_dim;
    let ko = (h / p.group) * p.head_dim;
    let so = (r * p.n_head + h) * p.n_ctx;

    var m = -3.0e38;
    for (var j = lid; j < n_kv; j += 64u) {
        var s = 0.0;
        for (var d = 0u; d < p.head_dim; d++) {
            s += q[qo + d] * kc[j * p.kv_dim + ko + d];
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
    let inv = 1.0 / sum;
    for (var d = lid; d < p.head_dim; d += 64u) {
        var acc = 0.0;
        for (var j = 0u; j < n_kv; j++) {
            acc += scores[so + j] * vc[j * p.kv_dim + ko + d];
        }
        out[qo + d] = acc * inv;
    }
}
