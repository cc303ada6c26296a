// a += s * b, elementwise: a LoRA delta joining its matmul's output.
struct P {
    n: u32,
    groups_x: u32,
    s: f32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> b: array<f32>;
@group(0) @binding(2) var<storage, read_write> a: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.y * p.groups_x + gid.x;
    if (i >= p.n) {
        return;
    }
    a[i] += p.s * b[i];
}
