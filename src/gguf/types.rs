//! ggml tensor types: ids, block geometry, names. Every type ggml defines is listed so that an
//! unsupported one is named in the error instead of being reported as garbage.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TensorType(pub u32);

/// (id, name, elements per block, bytes per block), as in ggml's type traits.
const TYPES: &[(u32, &str, u64, u64)] = &[
    (0, "F32", 1, 4),
    (1, "F16", 1, 2),
    (2, "Q4_0", 32, 18),
    (3, "Q4_1", 32, 20),
    (6, "Q5_0", 32, 22),
    (7, "Q5_1", 32, 24),
    (8, "Q8_0", 32, 34),
    (9, "Q8_1", 32, 36),
    (10, "Q2_K", 256, 84),
    (11, "Q3_K", 256, 110),
    (12, "Q4_K", 256, 144),
    (13, "Q5_K", 256, 176),
    (14, "Q6_K", 256, 210),
    (15, "Q8_K", 256, 292),
    (16, "IQ2_XXS", 256, 66),
    (17, "IQ2_XS", 256, 74),
    (18, "IQ3_XXS", 256, 98),
    (19, "IQ1_S", 256, 50),
    (20, "IQ4_NL", 32, 18),
    (21, "IQ3_S", 256, 110),
    (22, "IQ2_S", 256, 82),
    (23, "IQ4_XS", 256, 136),
    (24, "I8", 1, 1),
    (25, "I16", 1, 2),
    (26, "I32", 1, 4),
    (27, "I64", 1, 8),
    (28, "F64", 1, 8),
    (29, "IQ1_M", 256, 56),
    (30, "BF16", 1, 2),
    (34, "TQ1_0", 256, 54),
    (35, "TQ2_0", 256, 66),
    (39, "MXFP4", 32, 17),
];

impl TensorType {
    pub const F32: Self = Self(0);
    pub const F16: Self = Self(1);
    pub const Q4_0: Self = Self(2);
    pub const Q4_1: Self = Self(3);
    pub const Q5_0: Self = Self(6);
    pub const Q5_1: Self = Self(7);
    pub const Q8_0: Self = Self(8);
    pub const Q2_K: Self = Self(10);
    pub const Q3_K: Self = Self(11);
    pub const Q4_K: Self = Self(12);
    pub const Q5_K: Self = Self(13);
    pub const Q6_K: Self = Self(14);
    pub const BF16: Self = Self(30);

    /// The weight types the engine computes with.
    pub const SUPPORTED: [Self; 13] = [
        Self::F32, Self::F16, Self::BF16, Self::Q4_0, Self::Q4_1, Self::Q5_0, Self::Q5_1, Self::Q8_0,
        Self::Q2_K, Self::Q3_K, Self::Q4_K, Self::Q5_K, Self::Q6_K,
    ];

    fn entry(self) -> Option<&'static (u32, &'static str, u64, u64)> {
        TYPES.iter().find(|t| t.0 == self.0)
    }

    pub fn is_known(self) -> bool {
        self.entry().is_some()
    }

    pub fn is_supported(self) -> bool {
        Self::SUPPORTED.contains(&self)
    }

    /// Elements per block (1 for plain float types).
    pub fn block_size(self) -> Option<u64> {
        self.entry().map(|t| t.2)
    }

    /// Bytes per block.
    pub fn type_size(self) -> Option<u64> {
        self.entry().map(|t| t.3)
    }

    pub fn name(self) -> String {
        match self.entry() {
            Some(t) => t.1.to_string(),
            None => format!("unknown type {}", self.0),
        }
    }

    /// Parse a name such as "q4_k" or "Q4_K" (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        TYPES.iter().find(|t| t.1.eq_ignore_ascii_case(name)).map(|t| Self(t.0))
    }

    /// Bytes taken by a row-major tensor of `elements` elements whose rows are `row` long, or None
    /// when rows do not split into whole blocks.
    pub fn byte_size(self, row: u64, elements: u64) -> Option<u64> {
        let (bs, ts) = (self.block_size()?, self.type_size()?);
        if row % bs != 0 {
            return None;
        }
        (elements / bs).checked_mul(ts)
    }

    /// candle's name for the type, to encode fixtures (native only).
    #[cfg(not(any(target_arch = "wasm32", target_arch = "wasm64")))]
    pub fn to_candle(self) -> Option<candle_core::quantized::GgmlDType> {
        use candle_core::quantized::GgmlDType as G;
        Some(match self {
            Self::F32 => G::F32,
            Self::F16 => G::F16,
            Self::BF16 => G::BF16,
            Self::Q4_0 => G::Q4_0,
            Self::Q4_1 => G::Q4_1,
            Self::Q5_0 => G::Q5_0,
            Self::Q5_1 => G::Q5_1,
            Self::Q8_0 => G::Q8_0,
            Self::Q2_K => G::Q2K,
            Self::Q3_K => G::Q3K,
            Self::Q4_K => G::Q4K,
            Self::Q5_K => G::Q5K,
            Self::Q6_K => G::Q6K,
            _ => return None,
        })
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}
