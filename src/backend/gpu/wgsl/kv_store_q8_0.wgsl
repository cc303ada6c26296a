// Write the new rows of k and v into a Q8_0 KV cache (layout: kv/q8_0.wgsl), quantized as
// ggml's quantize_row_q8_0 does: per 32-value block d = amax / 127 (stored as f16) and q =
// round(x * 127 / amax), ties to even. The new rows are whole blocks (rows are a multiple of 32
// values) from block b0 on. Two blocks share a scale word, so one thread owns each scale word
// the new blocks touch: it quantizes its blocks that are new and keeps the other half as it was.
struct P {
    n_blocks: u32,   // new blocks in k (and in v)
    b0: u32,         // block index of position pos0 in the cache
    groups_x: u32,
    kv_scales: u32,  // word index of the first scale
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> k: array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> v: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> kc: array<kvw>;
@group(0) @binding(4) var<storage, read_write> vc: array<kvw>;

struct Block {
    qs: array<u32, 8>,
    d: f32,
}

// Four values in -127..=127 as the signed bytes of a word.
fn pack4(q: vec4<i32>) -> u32 {
    let b = vec4<u32>(bitcast<vec4<u32>>(q) & vec4<u32>(0xffu));
    return b.x | (b.y << 8u) | (b.z << 16u) | (b.w << 24u);
}

fn quantize(x_in: array<vec4<f32>, 8>) -> Block {
    var x = x_in;
    var amax = 0.0;
    for (var i = 0u; i < 8u; i++) {
        let a = abs(x[i]);
        amax = max(amax, max(max(a.x, a.y), max(a.z, a.w)));
    }
    var out: Block;
    out.d = amax / 127.0;
    let id = select(0.0, 127.0 / amax, amax != 0.0);
    for (var i = 0u; i < 8u; i++) {
        out.qs[i] = pack4(vec4<i32>(round(x[i] * id)));
    }
    return out;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let w = p.b0 / 2u + gid.y * p.groups_x + gid.x;  // the scale word this thread owns
    if (w >= (p.b0 + p.n_blocks + 1u) / 2u) {
        return;
    }
    var dk = unpack2x16float(kc[p.kv_scales + w]);
    var dv = unpack2x16float(vc[p.kv_scales + w]);
    for (var h = 0u; h < 2u; h++) {
        let b = 2u * w + h;
        if (b < p.b0 || b >= p.b0 + p.n_blocks) {
            continue;
        }
        let src = (b - p.b0) * 8u;
        var xk: array<vec4<f32>, 8>;
        var xv: array<vec4<f32>, 8>;
        for (var i = 0u; i < 8u; i++) {
            xk[i] = k[src + i];
            xv[i] = v[src + i];
        }
        let qk = quantize(xk);
        let qv = quantize(xv);
        for (var i = 0u; i < 8u; i++) {
            kc[b * 8u + i] = qk.qs[i];
            vc[b * 8u + i] = qv.qs[i];
        }
        dk[h] = qk.d;
        dv[h] = qv.d;
    }
    kc[p.kv_scales + w] = pack2x16float(dk);
    vc[p.kv_scales + w] = pack2x16float(dv);
}
