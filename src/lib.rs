//! Hearth: Llama-family GGUF models run in the browser (and natively, for tests and benchmarks).

pub mod backend;
pub mod chat;
pub mod engine;
pub mod error;
#[cfg(not(target_arch = "wasm32"))]
pub mod fixture;
pub mod gguf;
pub mod grammar;
pub mod memory;
pub mod model;
pub mod perplexity;
pub mod sampler;
pub mod stop;
pub mod tokenizer;
#[cfg(target_arch = "wasm32")]
pub mod wasm;

pub use engine::{shard_name, Engine, EngineLoader, GenerateOptions, Generation, Session, StopReason, TokenLogprobs};
pub use error::{HearthError, Result};
pub use perplexity::{Perplexity, PerplexityReport};
