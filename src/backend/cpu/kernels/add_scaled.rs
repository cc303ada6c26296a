//! a += s·b: how a LoRA delta joins its matmul's output. The product is rounded to f32 before the
//! sum, as llama.cpp's ggml_scale followed by ggml_add (Rust never fuses the two into an FMA, and
//! a vectorized loop rounds the same way, so every build agrees bit for bit).

pub fn add_scaled(a: &mut [f32], b: &[f32], s: f32) {
    for (x, &y) in a.iter_mut().zip(b) {
        *x += y * s;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rounds_the_product_before_the_sum() {
        // 1 + 3·(1/3 + ε): fused, the exact product would round differently from the f32 one.
        let (s, y) = (3.0f32, 1.0f32 / 3.0 + f32::EPSILON);
        let mut a = [1.0f32, -2.0];
        super::add_scaled(&mut a, &[y, 0.5], s);
        assert_eq!(a, [1.0 + (y * s), -0.5]);
    }
}
