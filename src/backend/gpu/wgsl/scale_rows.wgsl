// x[r, c] *= f[r]: Llama 4's attention temperature on the query rows of its NoPE layers.
struct P {
    n: u32,
    cols: u32,
    groups_x: u32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> f: array<f32>;
@group(0) @binding(2) var<storage, read_write> x: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.groups_x + gid.x;
    if (i >= p.n) {
        return;
    }
    x[i] *= f[i / p.cols];
}
