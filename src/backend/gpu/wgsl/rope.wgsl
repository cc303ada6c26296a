// Rotate pairs (x[2i], x[2i+1]) of every head in place; row r is at position pos0 + r.
// freqs[i] = (theta_scale^i, frequency factor i), computed once on the CPU as ggml does.
struct P {
    rows: u32,
    heads: u32,
    head_dim: u32,
    half_rot: u32,   // pairs rotated per head (n_rot / 2)
    pos0: u32,
    freq_scale: f32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> freqs: array<vec2<f32>>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let g = gid.x;
    if (g >= p.rows * p.heads * p.half_rot) {
        return;
    }
    let i = g % p.half_rot;
    let head = (g / p.half_rot) % p.heads;
    let r = g / (p.half_rot * p.heads);
    let f = freqs[i];
    let t = p.freq_scale * (f32(p.pos0 + r) * f.x / f.y);
    let c = cos(t);
    let s = sin(t);
    let o = (r * p.heads + head) * p.head_dim + 2u * i;
    let x0 = x[o];
    let x1 = x[o + 1u];
    x[o] = x0 * c - x1 * s;
    x[o + 1u] = x0 * s + x1 * c;
}
