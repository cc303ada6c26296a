// Llama 4 weighs the experts' input: out[i, c] = x[i / k, c] * weight of choice i.
struct P {
    n: u32,        // values per row
    choices: u32,  // tokens x k
    k: u32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> route: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let j = gid.y * p.groups_x + gid.x;
    if (j >= p.n * p.choices) {
        return;
    }
    let i = j / p.n;
    out[j] = x[(i / p.k) * p.n + j % p.n] * bitcast<f32>(route[p.choices + i]);
}
