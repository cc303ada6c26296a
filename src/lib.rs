//! Hearth: Llama-family GGUF models run in the browser (and natively, for tests and benchmarks).

pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod fixture;
pub mod gguf;
pub mod tokenizer;

pub use error::{HearthError, Result};
