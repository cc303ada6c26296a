// out[r, :] = x[r, :] / sqrt(mean(x[r, :]^2) + eps) * weight. One workgroup per row.
struct P {
    cols: u32,
    eps: f32,
}
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> weight: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

var<workgroup> part: array<f32, 256>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let o = wid.x * p.cols;
    var s = 0.0;
    for (var c = lid; c < p.cols; c += 256u) {
        s += x[o + c] * x[o + c];
    }
    part[lid] = s;
    workgroupBarrier();
    for (var h = 128u; h > 0u; h >>= 1u) {
        if (lid < h) {
            part[lid] += part[lid + h];
        }
        workgroupBarrier();
    }
    let scale = 1.0 / sqrt(part[0] / f32(p.cols) + p.eps);
    for (var c = lid; c < p.cols; c += 256u) {
        out[o + c] = x[o + c] * scale * weight[c];
    }
}
