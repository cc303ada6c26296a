// Causal attention of new rows over the KV cache (which already holds them, in the cache's type:
// the kv/*.wgsl module before this one reads four values with k4 / v4, as f32). One workgroup per
// (head, query row); row r sees positions first..=pos0 + r, where first is 0, or with chunk > 0
// the start of the row's chunk (Llama 4's chunked attention), so a whole prefill is one dispatch.
// Positions go by in blocks of 64 with an online softmax (the running maximum rescales what was summed before it), so nothing but the output is written and any
// context length works without scratch memory. Vectors are read four values at a time
// (head_dim is a multiple of 4, at most 256).
struct P {
    n_head: u32,
    group: u32,      // query heads per KV head
    head_dim: u32,
    kv_dim: u32,
    pos0: u32,
    scale: f32,
    kv_scales: u32,  // a Q8_0 cache's first scale word (kv/q8_0.wgsl)
    chunk: u32,      // 0: no chunks
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> q: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> kc: array<kvw>;
@group(0) @binding(3) var<storage, read> vc: array<kvw>;
@group(0) @binding(4) var<storage, read_write> out: array<vec4<f32>>;

var<workgroup> qh: array<vec4<f32>, 64>;    // this row's query head
var<workgroup> red: array<f32, 64>;
var<workgroup> pw: array<f32, 64>;          // exp(score - max) of the block's positions
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

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wid.x;
    let r = wid.y;
    let n_kv = p.pos0 + r + 1u;
    let first = select(0u, (p.pos0 + r) / max(p.chunk, 1u) * p.chunk, p.chunk > 0u);
    let hd4 = p.head_dim / 4u;
    let kv4s = p.kv_dim / 4u;
    let ko = (h / p.group) * hd4;
    if (lid < hd4) {
        qh[lid] = q[(r * p.n_head + h) * hd4 + lid];
    }
    // The weighted sum of values: hd4 threads cover the head four values each; the 64 / hd4
    // groups of them take every (64 / hd4)-th position of a block, so all 64 threads work even
    // for one decode row, and the groups' partial sums are added at the end.
    let groups = 64u / hd4;
    let d = lid % hd4;
    let g = lid / hd4;
    var m = -3.0e38;  // the running maximum (the same in every thread)
    var l = 0.0;      // this thread's share of the sum of exp(score - m)
    var acc = vec4<f32>(0.0);
    for (var j0 = first; j0 < n_kv; j0 += 64u) {
        workgroupBarrier();  // qh is written; the previous block's pw is no longer read
        let j = j0 + lid;
        var s = -3.0e38;
        if (j < n_kv) {
            var dot_qk = 0.0;
            for (var i = 0u; i < hd4; i++) {
                dot_qk += dot(qh[i], k4(j * kv4s + ko + i));
            }
            s = dot_qk * p.scale;
        }
        let m_new = max(m, reduce_max(s, lid));
        let corr = exp(m - m_new);
        let e = select(0.0, exp(s - m_new), j < n_kv);
        pw[lid] = e;
        l = l * corr + e;
        acc *= corr;
        m = m_new;
        workgroupBarrier();  // pw is complete
        if (g < groups) {
            let n = min(64u, n_kv - j0);
            for (var i = g; i < n; i += groups) {
                acc += pw[i] * v4((j0 + i) * kv4s + ko + d);
            }
        }
    }
    acc4[lid] = acc;
    red[lid] = l;
    workgroupBarrier();
    if (lid < hd4) {
        var sum = 0.0;
        for (var i = 0u; i < 64u; i++) {
            sum += red[i];
        }
        var total = vec4<f32>(0.0);
        for (var i = 0u; i < groups; i++) {
            total += acc4[lid + i * hd4];
        }
        out[(r * p.n_head + h) * hd4 + lid] = total * (1.0 / sum);
    }
}
