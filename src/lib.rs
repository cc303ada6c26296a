//! Hearth: Llama-family GGUF models run in the browser (and natively, for tests and benchmarks).

// The memory64 build (wasm64-unknown-unknown, nightly only): `core::arch::wasm64` is unstable.
#![cfg_attr(target_arch = "wasm64", feature(simd_wasm64))]

pub mod backend;
pub mod chat;
pub mod embed;
pub mod engine;
pub mod error;
#[cfg(not(any(target_arch = "wasm32", target_arch = "wasm64")))]
pub mod fixture;
pub mod gguf;
pub mod grammar;
pub mod guard;
pub mod memory;
pub mod model;
pub mod perplexity;
pub mod sampler;
pub mod saved;
pub mod stop;
pub mod tokenizer;
#[cfg(any(target_arch = "wasm32", target_arch = "wasm64"))]
pub mod wasm;

/// The wasm intrinsics (SIMD128, memory_size), which core::arch names by the address width: the
/// same functions on wasm32 and on wasm64 (the memory64 build).
#[cfg(target_arch = "wasm32")]
pub(crate) use core::arch::wasm32 as wasm_simd;
#[cfg(target_arch = "wasm64")]
pub(crate) use core::arch::wasm64 as wasm_simd;

pub use engine::{shard_name, Engine, EngineLoader, GenerateOptions, Generation, Session, StopReason, TokenLogprobs};
pub use error::{HearthError, Result};
pub use perplexity::{Perplexity, PerplexityReport};
