//! A model over 4 GiB on the WebGPU backend natively (lavapipe): `hearth fixture --big`'s
//! big-f16.gguf (4.5 GB, its F16 embedding table, which is also the output projection, alone
//! 4.06 GiB) streams into GPU buffers with the stream never holding more than a piece of it, and
//! its greedy tokens equal the CPU backend's. The model is $HEARTH_BIG_MODEL, or
//! ~/.cache/hearth/big/big-f16.gguf (written when missing, as tests/browser/memory64.test.mjs does);
//! about 5 GB of memory while it runs (lavapipe's buffers are host memory). Run with
//! `--nocapture` to see the load times and peak memory.

use hearth::backend::cpu::Cpu;
use hearth::backend::gpu::{Gpu, GpuOptions};
use hearth::backend::Backend;
use hearth::model::Logits;
use hearth::{Engine, EngineLoader};
use std::io::Read;
use std::path::PathBuf;

const PROMPT: &str = "The capital of France is";
// Each step reads the 4 GiB output projection; the prompt's step and one decode step show both.
const TOKENS: usize = 2;

fn big_model() -> PathBuf {
    if let Some(p) = std::env::var_os("HEARTH_BIG_MODEL") {
        return p.into();
    }
    // Outside the clone, where the browser tests keep it too (tests/browser/harness.mjs bigModel):
    // written once per machine.
    let cache = std::env::var_os("XDG_CACHE_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    let dir = cache.join("hearth/big");
    let file = dir.join("big-f16.gguf");
    if !file.exists() {
        hearth::fixture::write_all(&dir, None, hearth::fixture::Set::Big).expect("writing the model over 4 GiB");
    }
    file
}

/// Peak resident memory of this process since the last reset, and a reset (Linux).
fn peak_rss() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches(" kB").parse::<u64>().ok()).unwrap_or(0) * 1024
}
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Load through the stream in 4 MiB reads (as the CLI does), checking after each that the
/// stream holds at most a piece of the weights. Returns the engine and the seconds it took.
fn load<B: Backend>(backend: B, path: &PathBuf) -> (Engine<B>, f64) {
    let t = std::time::Instant::now();
    let mut f = std::fs::File::open(path).unwrap();
    let mut loader = EngineLoader::new(backend);
    let mut chunk = vec![0u8; 4 << 20];
    let (mut most, mut header_done) = (0, false);
    loop {
        let n = f.read(&mut chunk).unwrap();
        if n == 0 {
            break;
        }
        loader.feed(&chunk[..n]).unwrap();
        header_done |= loader.shards().is_some();
        if header_done {
            most = most.max(loader.buffered());
        }
    }
    assert!(most as u64 <= hearth::gguf::PIECE_BYTES, "the stream held {most} bytes of weights at once");
    (loader.finish().unwrap(), t.elapsed().as_secs_f64())
}

/// The prompt's last logits and TOKENS greedy tokens: one pass over the prompt, then one per
/// further token (each pass reads the 4 GiB output projection, the bulk of the test's time).
fn greedy<B: Backend>(e: &Engine<B>) -> (Vec<u32>, Vec<f32>) {
    let prompt = e.tokenizer.encode(PROMPT, true, false);
    let mut seq = e.new_sequence(64).unwrap();
    let first = e.model.forward(&mut seq, &prompt, Logits::Last).unwrap();
    let mut tokens = vec![hearth::sampler::argmax(&first)];
    while tokens.len() < TOKENS {
        let next = e.model.forward(&mut seq, &[tokens[tokens.len() - 1]], Logits::Last).unwrap();
        tokens.push(hearth::sampler::argmax(&next));
    }
    (tokens, first)
}

#[test]
fn a_model_over_4_gib_runs_on_the_gpu_and_generates_the_cpu_backends_tokens() {
    let path = big_model();
    let size = std::fs::metadata(&path).unwrap().len();
    assert!(size > 4 << 30, "{} is {size} bytes, not over 4 GiB", path.display());
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;

    reset_peak_rss();
    let before = peak_rss();
    let gpu = Gpu::new_blocking(GpuOptions::default()).expect("a Vulkan adapter (install mesa-vulkan-drivers for lavapipe)");
    let info = gpu.info().clone();
    let (on_gpu, gpu_load_s) = load(gpu, &path);
    let gpu_load_peak = peak_rss();
    let (gpu_tokens, gpu_logits) = greedy(&on_gpu);
    let gpu_peak = peak_rss();
    drop(on_gpu);

    reset_peak_rss();
    let (cpu, cpu_load_s) = load(Cpu, &path);
    let cpu_load_peak = peak_rss();
    let (cpu_tokens, cpu_logits) = greedy(&cpu);
    eprintln!(
        "{} ({:.2} GiB) on {} ({}): GPU load {gpu_load_s:.1} s, peak RSS {:.2} GiB loaded ({:.0} MiB before, lavapipe's buffers are host memory), {:.2} GiB after {TOKENS} tokens; CPU load {cpu_load_s:.1} s, peak RSS {:.2} GiB; tokens GPU {gpu_tokens:?} CPU {cpu_tokens:?}",
        path.display(),
        gib(size),
        info.name,
        if info.f16 { "f16 kernels" } else { "f32 kernels" },
        gib(gpu_load_peak),
        before as f64 / (1u64 << 20) as f64,
        gib(gpu_peak),
        gib(cpu_load_peak)
    );
    // The CPU rounds activations to f16 before F16 matmuls, the GPU keeps them f32: the logits
    // agree within that rounding, and the greedy tokens are the same.
    let scale = cpu_logits.iter().fold(0f32, |m, x| m.max(x.abs()));
    let d = cpu_logits.iter().zip(&gpu_logits).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(d < 0.02 * scale, "GPU vs CPU logits differ by {d} (largest {scale})");
    assert_eq!(gpu_tokens.len(), TOKENS);
    assert_eq!(gpu_tokens, cpu_tokens);
    // Loading holds the weights once (in GPU buffers here), not a second copy of the 4 GiB table.
    assert!(gpu_load_peak < before + size + (512 << 20), "peak RSS {gpu_load_peak} loading {size} bytes");
    assert!(cpu_load_peak < size + (512 << 20), "CPU peak RSS {cpu_load_peak} loading {size} bytes");
}
