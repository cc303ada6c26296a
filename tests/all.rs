//! Every integration test in one binary. Nineteen test crates each linked the engine, candle and
//! wgpu (seconds of linking apiece in every CI run) and ran one after another, a crate's slowest
//! test holding a core idle; as modules of one crate they link once and share the test threads.
//! Run one file's tests with `cargo test --test all <module>::` (e.g. `real_model::`).
//! tests/gpu_big.rs is a test of its own: it measures its process's peak memory.

mod common;

mod candle_reference;
mod chat_template;
mod chat_tools;
mod cli;
mod embeddings;
mod errors;
mod fuzz;
mod golden_model;
mod gpu;
mod grammar;
mod guard;
mod llama4;
mod lora;
mod moe;
mod real_model;
mod session;
mod shards;
mod tokenizer;
