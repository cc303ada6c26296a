//! The WGSL sources: one kernel per file in `wgsl/`; kernels that read weights are prefixed with
//! `common.wgsl` (byte-addressed reads) and the weight type's `wgsl/types/*.wgsl` (`QK`,
//! `BLOCK_BYTES`, `dequant4`), so one kernel file serves every type.

use crate::gguf::TensorType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    Matvec,
    Embed,
    RmsNorm,
    Rope,
    Attention,
    SiluMul,
    Add,
    Argmax,
}

impl Kernel {
    fn source(self) -> &'static str {
        match self {
            Kernel::Matvec => include_str!("wgsl/matvec.wgsl"),
            Kernel::Embed => include_str!("wgsl/embed.wgsl"),
            Kernel::RmsNorm => include_str!("wgsl/rms_norm.wgsl"),
            Kernel::Rope => include_str!("wgsl/rope.wgsl"),
            Kernel::Attention => include_str!("wgsl/attention.wgsl"),
            Kernel::SiluMul => include_str!("wgsl/silu_mul.wgsl"),
            Kernel::Add => include_str!("wgsl/add.wgsl"),
            Kernel::Argmax => include_str!("wgsl/argmax.wgsl"),
        }
    }
}

/// A weight type's WGSL (`QK`, `BLOCK_BYTES`, `dequant4`), or None where there is no GPU kernel.
pub fn type_source(ty: TensorType) -> Option<&'static str> {
    Some(match ty {
        TensorType::F32 => include_str!("wgsl/types/f32.wgsl"),
        TensorType::F16 => include_str!("wgsl/types/f16.wgsl"),
        TensorType::BF16 => include_str!("wgsl/types/bf16.wgsl"),
        TensorType::Q4_0 => include_str!("wgsl/types/q4_0.wgsl"),
        TensorType::Q4_1 => include_str!("wgsl/types/q4_1.wgsl"),
        TensorType::Q5_0 => include_str!("wgsl/types/q5_0.wgsl"),
        TensorType::Q5_1 => include_str!("wgsl/types/q5_1.wgsl"),
        TensorType::Q8_0 => include_str!("wgsl/types/q8_0.wgsl"),
        TensorType::Q2_K => include_str!("wgsl/types/q2_k.wgsl"),
        TensorType::Q3_K => include_str!("wgsl/types/q3_k.wgsl"),
        TensorType::Q4_K => include_str!("wgsl/types/q4_k.wgsl"),
        TensorType::Q5_K => include_str!("wgsl/types/q5_k.wgsl"),
        TensorType::Q6_K => include_str!("wgsl/types/q6_k.wgsl"),
        _ => return None,
    })
}

/// The whole module for `kernel` (specialized for weight type `ty` when it reads weights).
pub fn module_source(kernel: Kernel, ty: Option<TensorType>) -> Option<String> {
    match ty {
        None => Some(kernel.source().to_string()),
        Some(ty) => Some(format!("{}\n{}\n{}", include_str!("wgsl/common.wgsl"), type_source(ty)?, kernel.source())),
    }
}
