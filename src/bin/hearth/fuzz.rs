//! `hearth fuzz`: hostile GGUF files from `hearth::fixture::fuzz`, each loaded and run in a child
//! process (`hearth fuzz-case`) under a wall-clock timeout and a memory cap, and classified.

use hearth::backend::cpu::Cpu;
use hearth::chat::{ChatMessage, ChatTemplate, Date};
use hearth::fixture::fuzz;
use hearth::sampler::SamplerConfig;
use hearth::{Engine, EngineLoader, GenerateOptions, HearthError};
use serde_json::{json, Value as Json};
use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Every class, bad ones after `typed_error`.
pub const CLASSES: [&str; 8] = ["ok", "typed_error", "panic", "crash", "hang", "over_allocation", "messy_error", "chunk_dependent"];
const GOOD: [&str; 2] = ["ok", "typed_error"];

/// The codes `HearthError::code` gives.
const KNOWN_CODES: [&str; 21] = [
    "bad_magic",
    "unsupported_version",
    "truncated",
    "corrupt",
    "unsupported_tensor_type",
    "missing_tensor",
    "shape_mismatch",
    "missing_metadata",
    "bad_metadata",
    "unsupported_architecture",
    "unsupported_tokenizer",
    "context_overflow",
    "invalid_argument",
    "model_too_big",
    "chat_template",
    "aborted",
    "compute",
    "io",
    "backend_unavailable",
    "gpu",
    "device_lost",
];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Number of cases (seeds SEED, SEED+1, ...).
    #[arg(long, default_value_t = 1000)]
    cases: u64,
    /// First case seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Wall-clock limit per case (a child that exceeds it is killed: class `hang`).
    #[arg(long, default_value_t = 10000)]
    timeout_ms: u64,
    /// Address-space cap of each child (RLIMIT_AS through util-linux prlimit).
    #[arg(long, default_value_t = 2048)]
    memory_mb: u64,
    /// Where failing cases are kept (SEED.gguf and SEED.txt).
    #[arg(long, default_value = "fuzz-failures")]
    out: PathBuf,
    /// Run only this case seed, print its result, keep it in --out if it fails.
    #[arg(long)]
    replay: Option<u64>,
    /// With --replay: keep the case in --out whatever its class (to use the file elsewhere).
    #[arg(long)]
    keep: bool,
    /// Child processes at a time (default: the number of CPUs).
    #[arg(long)]
    jobs: Option<usize>,
    /// Seeds per child process.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Stop after this many seconds (the cases run so far are reported).
    #[arg(long)]
    max_seconds: Option<f64>,
}

#[derive(clap::Args)]
pub struct FuzzCaseArgs {
    /// Case seeds, comma separated, run in order.
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
}

// ---------------------------------------------------------------- the child

fn error_line(e: &HearthError) -> String {
    format!("hearth: error [{}]: {}", e.code(), e.message())
}

fn try_load(bytes: &[u8], chunk: usize) -> hearth::Result<Engine<Cpu>> {
    let mut loader = EngineLoader::new(Cpu);
    for c in bytes.chunks(chunk.max(1)) {
        loader.feed(c)?;
    }
    loader.finish()
}

/// Load in a few chunkings, then tokenize, render the chat template and generate 2 tokens.
fn run_one(seed: u64) -> Json {
    let case = fuzz::case(seed);
    let bytes = &case.bytes;
    let odd_chunk = 500 + (seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40) as usize % 9500;
    let mut first: Option<hearth::Result<Engine<Cpu>>> = None;
    let mut chunk_dependent = None;
    for chunk in [usize::MAX, odd_chunk] {
        let r = try_load(bytes, chunk);
        match &first {
            None => first = Some(r),
            Some(f) => {
                let same = match (f, &r) {
                    (Ok(_), Ok(_)) => true,
                    (Err(a), Err(b)) => a == b,
                    _ => false,
                };
                if !same && chunk_dependent.is_none() {
                    let show = |x: &hearth::Result<Engine<Cpu>>| match x {
                        Ok(_) => "loaded".to_string(),
                        Err(e) => error_line(e),
                    };
                    chunk_dependent = Some(format!("whole file: {} / chunks of {chunk}: {}", show(f), show(&r)));
                }
            }
        }
    }
    let base = json!({ "seed": seed, "base": case.base, "kinds": case.kinds.join("+"), "bytes": bytes.len() });
    let with = |mut v: Json, extra: Json| {
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    if let Some(d) = chunk_dependent {
        return with(base, json!({ "outcome": "chunk_dependent", "detail": d }));
    }
    let engine = match first.unwrap() {
        Ok(e) => e,
        Err(e) => return with(base, json!({ "outcome": "error", "stage": "load", "line": error_line(&e) })),
    };
    let run = || -> hearth::Result<()> {
        let _ = engine.tokenizer.encode("Hello world, <s> </s> \u{1f600} \n\t", true, true);
        let tokens = engine.tokenize_prompt("Hello world");
        let header = hearth::gguf::parse_header(bytes)?;
        let template = ChatTemplate::for_model(&header.metadata, &engine.tokenizer)?;
        let messages = [ChatMessage::new("system", "Be brief."), ChatMessage::new("user", "Hi there")];
        template.render(&messages, true, Date { year: 2026, month: 12, day: 5 })?;
        let opts = GenerateOptions { max_tokens: 2, sampler: SamplerConfig::greedy(), stop_at_eos: false, ..GenerateOptions::default() };
        let n_ctx = engine.model.config.context_length.min(128);
        engine.generate(&tokens, n_ctx, &opts, |_| true)?;
        Ok(())
    };
    match run() {
        Ok(()) => with(base, json!({ "outcome": "ok" })),
        Err(e) => with(base, json!({ "outcome": "error", "stage": "run", "line": error_line(&e) })),
    }
}

pub fn fuzz_case(args: &FuzzCaseArgs) {
    // Build the bases before the parent starts timing cases.
    let _ = fuzz::bases();
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", json!({ "ready": true }));
    let _ = out.flush();
    for &seed in &args.seeds {
        let _ = writeln!(out, "{}", json!({ "start": seed }));
        let _ = out.flush();
        let v = run_one(seed);
        let _ = writeln!(out, "{v}");
        let _ = out.flush();
    }
}

// ---------------------------------------------------------------- the parent

#[derive(Clone, Debug)]
struct Outcome {
    seed: u64,
    class: &'static str,
    code: Option<String>,
    detail: String,
}

fn classify_line(line: &str) -> (&'static str, Option<String>) {
    let code = line.strip_prefix("hearth: error [").and_then(|s| s.split(']').next()).map(str::to_string);
    let known = code.as_deref().is_some_and(|c| KNOWN_CODES.contains(&c));
    // HearthError::message() bounds messages at about 1000 characters (ending in '…'): the limit
    // applies to the message, not to the "hearth: error [code]: " prefix.
    let message = line.split_once("]: ").map_or(line, |(_, m)| m);
    let clean = !line.chars().any(|c| c.is_control()) && message.chars().count() <= 1024;
    (if known && clean { "typed_error" } else { "messy_error" }, code)
}

fn from_json(v: &Json) -> Option<Outcome> {
    let seed = v.get("seed")?.as_u64()?;
    let outcome = v.get("outcome")?.as_str()?;
    Some(match outcome {
        "ok" => Outcome { seed, class: "ok", code: None, detail: String::new() },
        "error" => {
            let line = v.get("line")?.as_str()?;
            let (class, code) = classify_line(line);
            Outcome { seed, class, code, detail: line.to_string() }
        }
        _ => Outcome { seed, class: "chunk_dependent", code: None, detail: v.get("detail")?.as_str()?.to_string() },
    })
}

struct Runner {
    exe: PathBuf,
    timeout: Duration,
    memory_bytes: Option<u64>,
}

enum Msg {
    Line(String),
    Eof,
}

impl Runner {
    fn command(&self, seeds: &[u64]) -> Command {
        let list = seeds.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
        let mut c = match self.memory_bytes {
            Some(b) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--as={b}")).arg("--").arg(&self.exe);
                c
            }
            None => Command::new(&self.exe),
        };
        c.args(["fuzz-case", "--seeds", &list]);
        c.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        c.env("RUST_BACKTRACE", "0");
        c
    }

    /// Run `seeds` in as many children as it takes: a child that dies or hangs is charged to the
    /// seed it was running, and a new child takes the seeds after it.
    fn run_batch(&self, seeds: &[u64], report: &mut dyn FnMut(Outcome)) {
        let mut rest: VecDeque<u64> = seeds.iter().copied().collect();
        while !rest.is_empty() {
            let list: Vec<u64> = rest.iter().copied().collect();
            let mut child = match self.command(&list).spawn() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("hearth fuzz: cannot start a child: {e}");
                    std::process::exit(2);
                }
            };
            let stdout = child.stdout.take().unwrap();
            let mut stderr = child.stderr.take().unwrap();
            let err_buf = Arc::new(Mutex::new(Vec::new()));
            let eb = err_buf.clone();
            let err_thread = std::thread::spawn(move || {
                let mut chunk = [0u8; 8192];
                while let Ok(n) = stderr.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let mut b = eb.lock().unwrap();
                    // Keep the first 64 KiB: enough to see a panic message.
                    if b.len() < 64 << 10 {
                        b.extend_from_slice(&chunk[..n]);
                    }
                }
            });
            let (tx, rx) = mpsc::channel();
            let out_thread = std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    match line {
                        Ok(l) => {
                            if tx.send(Msg::Line(l)).is_err() {
                                return;
                            }
                        }
                        Err(_) => break,
                    }
                }
                let _ = tx.send(Msg::Eof);
            });
            let mut deadline = Instant::now() + self.timeout.max(Duration::from_secs(60));
            let mut hung = false;
            loop {
                let now = Instant::now();
                if now >= deadline {
                    hung = true;
                    break;
                }
                match rx.recv_timeout(deadline - now) {
                    Ok(Msg::Line(l)) => {
                        let Ok(v) = serde_json::from_str::<Json>(&l) else { continue };
                        if v.get("start").is_some() || v.get("ready").is_some() {
                            deadline = Instant::now() + self.timeout;
                            continue;
                        }
                        if let Some(o) = from_json(&v) {
                            if rest.front() == Some(&o.seed) {
                                rest.pop_front();
                            }
                            report(o);
                        }
                    }
                    Ok(Msg::Eof) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        hung = true;
                        break;
                    }
                }
            }
            if hung {
                let _ = child.kill();
            }
            let status = child.wait().ok();
            let _ = out_thread.join();
            let _ = err_thread.join();
            // Lines that arrived between the timeout and the kill.
            while let Ok(Msg::Line(l)) = rx.try_recv() {
                if let Some(o) = serde_json::from_str::<Json>(&l).ok().as_ref().and_then(from_json) {
                    if rest.front() == Some(&o.seed) {
                        rest.pop_front();
                    }
                    report(o);
                }
            }
            let Some(&seed) = rest.front() else { break };
            rest.pop_front();
            let stderr = String::from_utf8_lossy(&err_buf.lock().unwrap()).into_owned();
            let status_text = status.map_or("unknown".to_string(), |s| s.to_string());
            let class = if hung {
                "hang"
            } else if stderr.contains("memory allocation of") {
                "over_allocation"
            } else if stderr.contains("panicked") {
                "panic"
            } else {
                "crash"
            };
            let detail = if hung {
                format!("no result within {} ms; stderr: {stderr}", self.timeout.as_millis())
            } else {
                format!("child exited with {status_text}; stderr: {stderr}")
            };
            report(Outcome { seed, class, code: None, detail });
        }
    }
}

fn keep(out: &std::path::Path, o: &Outcome) {
    let case = fuzz::case(o.seed);
    let _ = std::fs::create_dir_all(out);
    let _ = std::fs::write(out.join(format!("{}.gguf", o.seed)), &case.bytes);
    let text = format!(
        "seed: {}\nclass: {}\nbase: {}\nmutations: {}\nbytes: {}\nreplay: hearth fuzz --replay {}\n\n{}\n",
        o.seed,
        o.class,
        case.base,
        case.kinds.join("+"),
        case.bytes.len(),
        o.seed,
        o.detail
    );
    let _ = std::fs::write(out.join(format!("{}.txt", o.seed)), text);
}

fn prlimit_available() -> bool {
    Command::new("prlimit").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Returns the process exit code.
pub fn fuzz(args: &FuzzArgs) -> i32 {
    let exe = std::env::current_exe().expect("own executable");
    let memory_bytes = if args.memory_mb == 0 {
        None
    } else if prlimit_available() {
        Some(args.memory_mb << 20)
    } else {
        eprintln!("hearth fuzz: prlimit (util-linux) not found: running children without a memory cap");
        None
    };
    let runner = Runner { exe, timeout: Duration::from_millis(args.timeout_ms), memory_bytes };

    if let Some(seed) = args.replay {
        let mut got = None;
        runner.run_batch(&[seed], &mut |o| got = Some(o));
        let o = got.expect("one outcome");
        let case = fuzz::case(seed);
        println!(
            "{}",
            json!({ "seed": seed, "class": o.class, "code": o.code, "base": case.base, "kinds": case.kinds.join("+"), "bytes": case.bytes.len(), "detail": o.detail })
        );
        if args.keep || !GOOD.contains(&o.class) {
            keep(&args.out, &o);
        }
        return if GOOD.contains(&o.class) { 0 } else { 1 };
    }

    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let batch = args.batch.max(1) as u64;
    // Batches are handed out by index (a run may ask for billions of cases).
    let next_batch = std::sync::atomic::AtomicU64::new(0);
    let n_batches = args.cases.div_ceil(batch);
    let counts: Mutex<BTreeMap<&'static str, u64>> = Mutex::new(CLASSES.iter().map(|c| (*c, 0)).collect());
    let codes: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
    let failures: Mutex<Vec<Outcome>> = Mutex::new(Vec::new());
    let done = std::sync::atomic::AtomicU64::new(0);
    let start = Instant::now();
    let stop_at = args.max_seconds.map(|s| start + Duration::from_secs_f64(s));
    let last_progress = Mutex::new(Instant::now());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| loop {
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    return;
                }
                let b = next_batch.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if b >= n_batches {
                    return;
                }
                let seeds: Vec<u64> = (b * batch..((b + 1) * batch).min(args.cases)).map(|i| args.seed.wrapping_add(i)).collect();
                runner.run_batch(&seeds, &mut |o| {
                    *counts.lock().unwrap().entry(o.class).or_default() += 1;
                    if let Some(c) = &o.code {
                        *codes.lock().unwrap().entry(c.clone()).or_default() += 1;
                    }
                    if !GOOD.contains(&o.class) {
                        eprintln!("hearth fuzz: seed {} -> {}: {}", o.seed, o.class, o.detail.chars().take(400).collect::<String>());
                        keep(&args.out, &o);
                        failures.lock().unwrap().push(o);
                    }
                    let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                    let mut lp = last_progress.lock().unwrap();
                    if lp.elapsed() > Duration::from_secs(10) {
                        *lp = Instant::now();
                        let secs = start.elapsed().as_secs_f64();
                        eprintln!("hearth fuzz: {n}/{} cases, {:.1} cases/s, {:?}", args.cases, n as f64 / secs, counts.lock().unwrap());
                    }
                });
            });
        }
    });
    let secs = start.elapsed().as_secs_f64();
    let n = done.load(std::sync::atomic::Ordering::Relaxed);
    let counts = counts.into_inner().unwrap();
    let mut failures = failures.into_inner().unwrap();
    failures.sort_by_key(|o| o.seed);
    let bad = counts.iter().filter(|(c, _)| !GOOD.contains(c)).map(|(_, n)| n).sum::<u64>();
    println!(
        "{}",
        json!({
            "cases": n,
            "seed": args.seed,
            "seconds": secs,
            "cases_per_second": n as f64 / secs,
            "counts": counts,
            "error_codes": codes.into_inner().unwrap(),
            "failures": failures.iter().take(50).map(|o| json!({ "seed": o.seed, "class": o.class })).collect::<Vec<_>>(),
        })
    );
    i32::from(bad > 0)
}
