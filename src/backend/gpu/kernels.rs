//! The WGSL sources: one kernel per file in `wgsl/`. Every module starts with a prelude
//! (`prelude_f16.wgsl` with shader-f16, else `prelude_f32.wgsl`) naming the KV-cache and F16
//! weight element types. Kernels generic over the weight type (matvec, matmul, embed) follow it
//! with `bytes.wgsl`, `common.wgsl` (byte-addressed reads) and the type's `wgsl/types/*.wgsl`
//! (`QK`, `BLOCK_BYTES`, `dequant4`), so one kernel file serves every type; the fast decode
//! matvec is `matvec_fast.wgsl` with the type's `wgsl/fast/*.wgsl` (its weight binding, `UNIT`,
//! `unit_dot`). The KV-cache kernels (`kv_store`, `attention`) follow the prelude with the cache
//! type's `wgsl/kv/*.wgsl` (its element `kvw` and the readers `k4`, `v4`; `ty` names the cache
//! type: F32, F16, or Q8_0, which `kv_store_q8_0.wgsl` writes).

use crate::gguf::TensorType;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    /// Any type, one workgroup per (row, token): the decode fallback.
    Matvec,
    /// Decode for the types with a file in `wgsl/fast/`.
    MatvecFast,
    /// Prefill: tiles of activation rows x weight rows.
    Matmul,
    Embed,
    KvStore,
    RmsNorm,
    Rope,
    Attention,
    SiluMul,
    /// Rows times a factor each (Llama 4's attention temperature).
    ScaleRows,
    Add,
    /// a += s·b (LoRA deltas).
    AddScaled,
    Argmax,
    /// Walsh-Hadamard rotation of groups of values (around a Q8_0 KV cache).
    Fwht,
    /// Mixture of experts: routing, the chosen experts' matvecs (any weight type), the weighted
    /// sum of their outputs, and Llama 4's weighing of their input.
    MoeRoute,
    MatvecExperts,
    MoeCombine,
    MoeWeigh,
}

/// Weight rows per workgroup of `MatvecFast` (its ROWS).
pub const FAST_ROWS: usize = 8;
/// The output tile of `Matmul` (TM = TN) and its step over k (TK).
pub const TILE: usize = 64;
pub const TILE_K: usize = 16;
/// Activation rows from which `matmul` uses the tiled kernel: below this the matvec reads the
/// weights `rows` times, which is cheaper than a mostly empty 64-row tile.
pub const TILED_FROM_ROWS: usize = 4;

impl Kernel {
    fn source(self) -> &'static str {
        match self {
            Kernel::Matvec => include_str!("wgsl/matvec.wgsl"),
            Kernel::MatvecFast => include_str!("wgsl/matvec_fast.wgsl"),
            Kernel::Matmul => include_str!("wgsl/matmul.wgsl"),
            Kernel::Embed => include_str!("wgsl/embed.wgsl"),
            Kernel::KvStore => include_str!("wgsl/kv_store.wgsl"),
            Kernel::RmsNorm => include_str!("wgsl/rms_norm.wgsl"),
            Kernel::Rope => include_str!("wgsl/rope.wgsl"),
            Kernel::Attention => include_str!("wgsl/attention.wgsl"),
            Kernel::SiluMul => include_str!("wgsl/silu_mul.wgsl"),
            Kernel::ScaleRows => include_str!("wgsl/scale_rows.wgsl"),
            Kernel::Add => include_str!("wgsl/add.wgsl"),
            Kernel::AddScaled => include_str!("wgsl/add_scaled.wgsl"),
            Kernel::Argmax => include_str!("wgsl/argmax.wgsl"),
            Kernel::Fwht => include_str!("wgsl/fwht.wgsl"),
            Kernel::MoeRoute => include_str!("wgsl/moe_route.wgsl"),
            Kernel::MatvecExperts => include_str!("wgsl/matvec_experts.wgsl"),
            Kernel::MoeCombine => include_str!("wgsl/moe_combine.wgsl"),
            Kernel::MoeWeigh => include_str!("wgsl/moe_weigh.wgsl"),
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

/// A type's fast matvec file and the row lengths it takes (a multiple of its values per unit).
fn fast_source(ty: TensorType) -> Option<(&'static str, usize)> {
    Some(match ty {
        TensorType::Q4_0 => (include_str!("wgsl/fast/q4_0.wgsl"), 32),
        TensorType::Q8_0 => (include_str!("wgsl/fast/q8_0.wgsl"), 32),
        TensorType::Q4_K => (include_str!("wgsl/fast/q4_k.wgsl"), 256),
        TensorType::Q6_K => (include_str!("wgsl/fast/q6_k.wgsl"), 256),
        TensorType::F16 => (include_str!("wgsl/fast/f16.wgsl"), 8),
        _ => return None,
    })
}

/// The kernel `matmul` runs for `rows` activation rows of length `k` against a `ty` weight.
pub fn pick_matmul(ty: TensorType, rows: usize, k: usize) -> Kernel {
    if rows >= TILED_FROM_ROWS && k.is_multiple_of(TILE_K) {
        Kernel::Matmul
    } else if fast_source(ty).is_some_and(|(_, unit)| k.is_multiple_of(unit)) {
        Kernel::MatvecFast
    } else {
        Kernel::Matvec
    }
}

/// A KV cache type's WGSL (`kvw`, `k4`, `v4`, `kv_pack`): `ty` is the cache's element type;
/// f16 without shader-f16 packs halves in u32 words.
pub fn kv_source(ty: TensorType, f16: bool) -> Option<&'static str> {
    Some(match ty {
        TensorType::F32 => include_str!("wgsl/kv/f32.wgsl"),
        TensorType::F16 if f16 => include_str!("wgsl/kv/f16.wgsl"),
        TensorType::F16 => include_str!("wgsl/kv/f16_packed.wgsl"),
        TensorType::Q8_0 => include_str!("wgsl/kv/q8_0.wgsl"),
        _ => return None,
    })
}

/// The whole module for `kernel` (specialized for weight type `ty` when it reads weights, for
/// the KV cache type `ty` when it reads or writes the cache), with the f16 prelude when `f16`.
pub fn module_source(kernel: Kernel, ty: Option<TensorType>, f16: bool) -> Option<String> {
    let prelude = if f16 { include_str!("wgsl/prelude_f16.wgsl") } else { include_str!("wgsl/prelude_f32.wgsl") };
    let bytes = include_str!("wgsl/bytes.wgsl");
    let body = match (kernel, ty) {
        (Kernel::KvStore, Some(TensorType::Q8_0)) => format!("{}\n{}", kv_source(TensorType::Q8_0, f16)?, include_str!("wgsl/kv_store_q8_0.wgsl")),
        (Kernel::KvStore | Kernel::Attention, Some(ty)) => format!("{}\n{}", kv_source(ty, f16)?, kernel.source()),
        (Kernel::KvStore | Kernel::Attention, None) => return None,
        (Kernel::MatvecFast, Some(ty)) => format!("{bytes}\n{}\n{}", kernel.source(), fast_source(ty)?.0),
        (Kernel::Matvec | Kernel::Matmul | Kernel::Embed | Kernel::MatvecExperts, Some(ty)) => {
            format!("{bytes}\n{}\n{}\n{}", include_str!("wgsl/common.wgsl"), type_source(ty)?, kernel.source())
        }
        (Kernel::Matvec | Kernel::MatvecFast | Kernel::Matmul | Kernel::Embed | Kernel::MatvecExperts, None) => return None,
        (_, _) => kernel.source().to_string(),
    };
    Some(format!("{prelude}\n{body}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_picks_the_tiled_kernel_for_prefill_and_the_fast_matvec_for_decode() {
        for ty in [TensorType::Q4_0, TensorType::Q8_0, TensorType::Q4_K, TensorType::Q6_K, TensorType::F16] {
            assert_eq!(pick_matmul(ty, 1, 2048), Kernel::MatvecFast, "{ty}");
            assert_eq!(pick_matmul(ty, 3, 2048), Kernel::MatvecFast, "{ty}");
            assert_eq!(pick_matmul(ty, 4, 2048), Kernel::Matmul, "{ty}");
            assert_eq!(pick_matmul(ty, 64, 2048), Kernel::Matmul, "{ty}");
        }
        for ty in [TensorType::F32, TensorType::BF16, TensorType::Q4_1, TensorType::Q5_K, TensorType::Q3_K] {
            assert_eq!(pick_matmul(ty, 1, 2048), Kernel::Matvec, "{ty}");
            assert_eq!(pick_matmul(ty, 64, 2048), Kernel::Matmul, "{ty}");
        }
        // Rows the fast F16 kernel or the tiles cannot cut evenly fall back to the generic matvec.
        assert_eq!(pick_matmul(TensorType::F16, 1, 12), Kernel::Matvec);
        assert_eq!(pick_matmul(TensorType::F16, 64, 12), Kernel::Matvec);
    }

    #[test]
    fn weight_kernels_need_a_type_with_kernels() {
        assert!(module_source(Kernel::Matmul, Some(TensorType::Q4_K), false).is_some());
        assert!(module_source(Kernel::MatvecFast, Some(TensorType::Q5_K), false).is_none());
        assert!(module_source(Kernel::Matvec, TensorType::from_name("iq2_xxs"), true).is_none());
        for ty in TensorType::SUPPORTED {
            assert!(module_source(Kernel::Matvec, Some(ty), false).is_some(), "{ty} has GPU kernels");
        }
        assert!(module_source(Kernel::Embed, None, true).is_none());
        let f16 = module_source(Kernel::Rope, None, true).unwrap();
        assert!(f16.starts_with("// ") && f16.contains("\nenable f16;"), "the f16 prelude leads");
        assert!(!module_source(Kernel::Rope, None, false).unwrap().contains("enable f16"));
        // The KV kernels need the cache's type: f16 as vec4<f16> with shader-f16, else in u32 words.
        assert!(module_source(Kernel::Attention, None, true).is_none());
        assert!(module_source(Kernel::Attention, Some(TensorType::Q4_0), true).is_none());
        assert!(module_source(Kernel::Attention, Some(TensorType::F16), true).unwrap().contains("alias kvw = vec4<f16>;"));
        assert!(module_source(Kernel::Attention, Some(TensorType::F16), false).unwrap().contains("alias kvw = vec2<u32>;"));
        assert!(module_source(Kernel::KvStore, Some(TensorType::Q8_0), false).unwrap().contains("fn quantize("));
        for ty in [TensorType::F32, TensorType::F16, TensorType::Q8_0] {
            for f16 in [false, true] {
                assert!(module_source(Kernel::KvStore, Some(ty), f16).is_some() && module_source(Kernel::Attention, Some(ty), f16).is_some());
            }
        }
    }
}
