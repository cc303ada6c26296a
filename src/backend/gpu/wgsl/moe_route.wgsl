// Mixture-of-experts routing, one thread per token: softmax over the router's logits (or a
// sigmoid per logit), the k largest chosen in descending order (by probability for softmax, by
// logit for sigmoid, whose f32 values saturate to ties; the lower index first among equals),
// their weights renormalized to sum 1 (clamped at 2^-14, as llama.cpp) and scaled when asked.
// Out: route[t * k + s] = expert, route[n_choice + t * k + s] = bits of its weight.
struct P {
    rows: u32,
    n_expert: u32,
    k: u32,
    sigmoid: u32,
    normalize: u32,
    scale: f32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> route: array<u32>;

fn prob(l: f32, mx: f32, inv: f32) -> f32 {
    if (p.sigmoid != 0u) {
        return 1.0 / (1.0 + exp(-l));
    }
    return exp(l - mx) * inv;
}

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.x;
    if (t >= p.rows) {
        return;
    }
    let base = t * p.n_expert;
    var mx = logits[base];
    for (var e = 1u; e < p.n_expert; e++) {
        mx = max(mx, logits[base + e]);
    }
    var sum = 0.0;
    for (var e = 0u; e < p.n_expert; e++) {
        sum += exp(logits[base + e] - mx);
    }
    let inv = 1.0 / sum;
    let n_choice = p.rows * p.k;
    var wsum = 0.0;
    for (var s = 0u; s < p.k; s++) {
        var best = 0xffffffffu;
        var best_v = 0.0;
        for (var e = 0u; e < p.n_expert; e++) {
            var taken = false;
            for (var j = 0u; j < s; j++) {
                taken = taken || route[t * p.k + j] == e;
            }
            // Softmax preserves the logits' order, up to rounding: compare probabilities.
            var v = logits[base + e];
            if (p.sigmoid == 0u) {
                v = prob(v, mx, inv);
            }
            if (!taken && (best == 0xffffffffu || v > best_v)) {
                best = e;
                best_v = v;
            }
        }
        let w = prob(logits[base + best], mx, inv);
        route[t * p.k + s] = best;
        route[n_choice + t * p.k + s] = bitcast<u32>(w);
        wsum += w;
    }
    if (p.normalize != 0u) {
        let d = max(wsum, 6.103515625e-5);
        for (var s = 0u; s < p.k; s++) {
            let i = n_choice + t * p.k + s;
            route[i] = bitcast<u32>(bitcast<f32>(route[i]) / d);
        }
    }
    if (p.scale != 0.0 && p.scale != 1.0) {
        for (var s = 0u; s < p.k; s++) {
            let i = n_choice + t * p.k + s;
            route[i] = bitcast<u32>(bitcast<f32>(route[i]) * p.scale);
        }
    }
}
