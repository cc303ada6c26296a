//! LoRA adapters in llama.cpp's GGUF adapter format (`general.type = adapter`, `adapter.type =
//! lora`, `adapter.lora.alpha`; tensors `<base tensor>.lora_a` / `.lora_b`), applied as llama.cpp
//! applies them (llama-adapter.cpp, llama-graph.cpp's `build_lora_mm` and `build_inp_embd`):
//! y = W x + Σ scale · B (A x) for every matrix an adapter has a pair for, and for the embedding
//! table x + Σ scale · B (A[ids]); scale = user scale · alpha / rank, or the user scale when alpha
//! is 0. The base weights are never touched: an adapter is two small matrices per tensor, kept in
//! the backend in their GGUF encoding, so adapters can be added, rescaled and removed at run time.

use super::{tensor_shapes, LlamaConfig};
use crate::backend::Backend;
use crate::error::{HearthError, Result};
use crate::gguf::{GgufStream, Header, TensorInfo, TensorSink};
use std::collections::{BTreeMap, HashMap};

/// The matrices of a layer, in `Layer`'s order.
pub const LAYER_MATRICES: [&str; 7] = ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"];

/// Where a LoRA pair applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    TokEmbd,
    Output,
    /// Layer, index into `LAYER_MATRICES`.
    Layer(usize, usize),
}

impl Target {
    fn of(name: &str) -> Option<Target> {
        match name {
            "token_embd.weight" => return Some(Target::TokEmbd),
            "output.weight" => return Some(Target::Output),
            _ => {}
        }
        let rest = name.strip_prefix("blk.")?.strip_suffix(".weight")?;
        let (layer, matrix) = rest.split_once('.')?;
        Some(Target::Layer(layer.parse().ok()?, LAYER_MATRICES.iter().position(|&m| m == matrix)?))
    }
}

/// One tensor's low-rank pair. For a matrix W (`[n_out, n_in]`): `a` is `[rank, n_in]` and `b`
/// `[n_out, rank]` (rows x row length), so B (A x) is two matmuls. For the embedding table `a`
/// is `[n_vocab, rank]` (rows looked up by token) and `b` `[n_embd, rank]`.
pub struct LoraPair<B: Backend> {
    pub a: B::Weight,
    pub b: B::Weight,
    pub rank: usize,
}

/// A loaded adapter's pairs, by where they apply.
pub struct Adapter<B: Backend> {
    /// `general.name` of the adapter file (empty when it has none).
    pub name: String,
    pub alpha: f32,
    tok_embd: Option<LoraPair<B>>,
    output: Option<LoraPair<B>>,
    layers: Vec<[Option<LoraPair<B>>; 7]>,
    /// How many tensors of the base model it changes.
    pub tensors: usize,
}

impl<B: Backend> Adapter<B> {
    pub fn pair(&self, t: Target) -> Option<&LoraPair<B>> {
        match t {
            Target::TokEmbd => self.tok_embd.as_ref(),
            Target::Output => self.output.as_ref(),
            Target::Layer(l, m) => self.layers.get(l)?[m].as_ref(),
        }
    }

    /// The largest rank of its pairs.
    pub fn rank(&self) -> usize {
        let layers = self.layers.iter().flatten().flatten();
        self.tok_embd.iter().chain(&self.output).chain(layers).map(|p| p.rank).max().unwrap_or(0)
    }

    /// llama.cpp's `llama_adapter_lora_weight::get_scale`: the factor B (A x) is multiplied by.
    pub fn factor(&self, pair: &LoraPair<B>, user_scale: f32) -> f32 {
        if self.alpha != 0.0 {
            user_scale * self.alpha / pair.rank as f32
        } else {
            user_scale
        }
    }
}

/// An adapter in use, with its user scale.
pub struct Active<B: Backend> {
    pub id: u32,
    pub scale: f32,
    pub adapter: Adapter<B>,
}

/// What `Engine::adapters` reports of each adapter in use.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterInfo {
    pub id: u32,
    pub name: String,
    pub scale: f32,
    pub alpha: f32,
    pub rank: usize,
    pub tensors: usize,
}

/// The adapters a model runs with, in the order they were added (llama.cpp adds their deltas one
/// after another too). `epoch` changes with every change of the set or of a scale, so a KV cache
/// computed under other adapters is known stale (`Sequence::adapters`).
pub struct Adapters<B: Backend> {
    pub list: Vec<Active<B>>,
    next_id: u32,
    pub epoch: u64,
}

impl<B: Backend> Default for Adapters<B> {
    fn default() -> Self {
        Adapters { list: Vec::new(), next_id: 0, epoch: 0 }
    }
}

fn check_scale(scale: f32) -> Result<()> {
    if !scale.is_finite() {
        return Err(HearthError::InvalidArgument(format!("a LoRA scale must be a finite number, got {scale}")));
    }
    Ok(())
}

impl<B: Backend> Adapters<B> {
    /// Use `adapter` with `scale`; returns its id (unique for the model's lifetime).
    pub fn add(&mut self, adapter: Adapter<B>, scale: f32) -> Result<u32> {
        check_scale(scale)?;
        self.next_id += 1;
        self.list.push(Active { id: self.next_id, scale, adapter });
        self.epoch += 1;
        Ok(self.next_id)
    }

    fn find(&mut self, id: u32) -> Result<usize> {
        self.list.iter().position(|a| a.id == id).ok_or_else(|| HearthError::InvalidArgument(format!("no LoRA adapter has id {id}")))
    }

    pub fn set_scale(&mut self, id: u32, scale: f32) -> Result<()> {
        check_scale(scale)?;
        let i = self.find(id)?;
        if self.list[i].scale.to_bits() != scale.to_bits() {
            self.list[i].scale = scale;
            self.epoch += 1;
        }
        Ok(())
    }

    pub fn remove(&mut self, id: u32) -> Result<()> {
        let i = self.find(id)?;
        self.list.remove(i);
        self.epoch += 1;
        Ok(())
    }

    pub fn info(&self) -> Vec<AdapterInfo> {
        self.list
            .iter()
            .map(|a| AdapterInfo { id: a.id, name: a.adapter.name.clone(), scale: a.scale, alpha: a.adapter.alpha, rank: a.adapter.rank(), tensors: a.adapter.tensors })
            .collect()
    }

    /// The pairs that apply to `t` with their factors (adapters at scale 0 add exactly nothing,
    /// so they are skipped).
    pub fn for_target(&self, t: Target) -> impl Iterator<Item = (&LoraPair<B>, f32)> {
        self.list.iter().filter(|a| a.scale != 0.0).filter_map(move |a| a.adapter.pair(t).map(|p| (p, a.adapter.factor(p, a.scale))))
    }
}

/// What an adapter is checked against: the loaded model's architecture and matrices.
#[derive(Clone)]
pub struct AdapterBase {
    /// Matrices the graph multiplies by, with their dims (ggml order).
    shapes: HashMap<String, Vec<u64>>,
    n_layer: usize,
    /// The output projection is the embedding table (llama.cpp would multiply the output by the
    /// embedding's LoRA pair, whose shapes cannot fit: it aborts; we refuse it).
    tied: bool,
}

impl AdapterBase {
    pub fn new(config: &LlamaConfig, tied: bool) -> AdapterBase {
        let shapes = tensor_shapes(config).into_iter().filter(|(n, d)| d.len() == 2 && !(tied && n == "output.weight")).collect();
        AdapterBase { shapes, n_layer: config.n_layer, tied }
    }
}

/// One half of a pair as the header announced it.
struct Half {
    dims: Vec<u64>,
}

/// Reads an adapter's GGUF as it streams in (a `TensorSink`): the header is checked whole
/// against the base before any tensor is placed, and each pair's halves go to the backend as
/// their bytes arrive.
pub struct AdapterLoader<B: Backend> {
    stream: GgufStream,
    sink: Sink<B>,
}

/// A pair's halves as their bytes arrive.
type Halves<B> = (Option<<B as Backend>::Weight>, Option<<B as Backend>::Weight>);

struct Sink<B: Backend> {
    backend: B,
    base: AdapterBase,
    name: String,
    alpha: f32,
    /// Base tensor name -> (A, B) as announced.
    pairs: BTreeMap<String, (Option<Half>, Option<Half>)>,
    weights: HashMap<String, Halves<B>>,
    header_seen: bool,
}

fn not_adapter(why: impl Into<String>) -> HearthError {
    HearthError::NotAnAdapter(why.into())
}

fn mismatch(what: impl Into<String>, why: impl Into<String>) -> HearthError {
    HearthError::AdapterMismatch { what: what.into(), why: why.into() }
}

/// Dims as people read them (rows first), as `ShapeMismatch` prints them.
fn shape(d: &[u64]) -> String {
    format!("{:?}", d.iter().rev().collect::<Vec<_>>())
}

impl<B: Backend> AdapterLoader<B> {
    pub fn new(backend: B, base: AdapterBase) -> Self {
        let sink = Sink { backend, base, name: String::new(), alpha: 0.0, pairs: BTreeMap::new(), weights: HashMap::new(), header_seen: false };
        AdapterLoader { stream: GgufStream::new(), sink }
    }

    pub fn feed(&mut self, chunk: &[u8]) -> Result<()> {
        self.stream.feed(chunk, &mut self.sink)
    }

    pub fn received(&self) -> u64 {
        self.stream.received()
    }

    /// Every byte has arrived: the adapter, ready for `Adapters::add`.
    pub fn finish(self) -> Result<Adapter<B>> {
        self.stream.into_header()?;
        let mut s = self.sink;
        let mut adapter = Adapter { name: s.name, alpha: s.alpha, tok_embd: None, output: None, layers: Vec::new(), tensors: 0 };
        adapter.layers.resize_with(s.base.n_layer, Default::default);
        for (name, (a, b)) in s.pairs {
            let (Some(ha), Some(_)) = (a, b) else { unreachable!("the header check pairs every tensor") };
            let (wa, wb) = s.weights.remove(&name).unwrap_or((None, None));
            let (Some(wa), Some(wb)) = (wa, wb) else {
                return Err(HearthError::Corrupt(format!("the data of the LoRA pair of '{name}' never arrived")));
            };
            let rank = if name == "token_embd.weight" { ha.dims[0] } else { ha.dims[1] } as usize;
            let pair = Some(LoraPair { a: wa, b: wb, rank });
            match Target::of(&name).expect("the header check knows every target") {
                Target::TokEmbd => adapter.tok_embd = pair,
                Target::Output => adapter.output = pair,
                Target::Layer(l, m) => adapter.layers[l][m] = pair,
            }
            adapter.tensors += 1;
        }
        Ok(adapter)
    }
}

impl<B: Backend> TensorSink for Sink<B> {
    fn header(&mut self, header: &Header) -> Result<()> {
        let md = &header.metadata;
        let general_type = md.opt_str("general.type")?.unwrap_or("");
        if general_type != "adapter" {
            let is = if general_type.is_empty() { "has no general.type".to_string() } else { format!("its general.type is '{general_type}'") };
            return Err(not_adapter(format!("{is}, not 'adapter' (is this a model file?)")));
        }
        let arch = md.opt_str("general.architecture")?.unwrap_or("");
        if arch != "llama" {
            return Err(mismatch("general.architecture", format!("the adapter is for '{arch}', the model is 'llama'")));
        }
        let ty = md.opt_str("adapter.type")?.unwrap_or("");
        if ty != "lora" {
            return Err(not_adapter(format!("adapter.type is '{ty}', not 'lora'")));
        }
        if md.get("adapter.alora.invocation_tokens").is_some() {
            return Err(not_adapter("activated LoRA (aLoRA, adapter.alora.invocation_tokens) is not supported"));
        }
        self.alpha = md.opt_f64("adapter.lora.alpha")?.unwrap_or(0.0) as f32;
        if !self.alpha.is_finite() {
            return Err(HearthError::BadMetadata { key: "adapter.lora.alpha".into(), why: format!("{} is not a finite number", self.alpha) });
        }
        self.name = md.opt_str("general.name")?.unwrap_or("").to_string();
        // Pair the halves by base tensor name, as llama_adapter_lora_init does.
        for t in &header.tensors {
            let half = Half { dims: t.dims.clone() };
            if let Some(base) = t.name.strip_suffix(".lora_a") {
                let e = self.pairs.entry(base.to_string()).or_default();
                if e.0.replace(half).is_some() {
                    return Err(HearthError::Corrupt(format!("tensor '{}' appears twice", t.name)));
                }
            } else if let Some(base) = t.name.strip_suffix(".lora_b") {
                let e = self.pairs.entry(base.to_string()).or_default();
                if e.1.replace(half).is_some() {
                    return Err(HearthError::Corrupt(format!("tensor '{}' appears twice", t.name)));
                }
            } else if t.name.ends_with("_norm.weight") {
                continue; // llama.cpp ignores norm vectors in adapters too
            } else {
                return Err(not_adapter(format!("tensor '{}' is neither a .lora_a nor a .lora_b", t.name)));
            }
            if !t.ty.is_supported() {
                return Err(HearthError::UnsupportedTensorType { name: t.name.clone(), ty: t.ty.name() });
            }
            if t.dims.len() != 2 {
                return Err(mismatch(format!("tensor '{}'", t.name), format!("has {} dimensions, a LoRA half has 2", t.dims.len())));
            }
        }
        if self.pairs.is_empty() {
            return Err(not_adapter("it holds no .lora_a/.lora_b tensors"));
        }
        for (name, (a, b)) in &self.pairs {
            let (Some(a), Some(b)) = (a, b) else {
                let missing = if a.is_none() { "lora_a" } else { "lora_b" };
                return Err(not_adapter(format!("the LoRA pair of '{name}' has no {name}.{missing}")));
            };
            if name == "token_embd.weight" && self.base.tied {
                return Err(mismatch(
                    "tensor 'token_embd.weight'",
                    "the model's output projection is its embedding table (tied); a LoRA of it cannot apply to both",
                ));
            }
            let Some(w) = self.base.shapes.get(name).filter(|_| Target::of(name).is_some()) else {
                return Err(mismatch(format!("tensor '{name}'"), "the model has no such matrix (an adapter for another base model?)"));
            };
            let (a_name, b_name) = (format!("tensor '{name}.lora_a'"), format!("tensor '{name}.lora_b'"));
            // llama.cpp's checks (ggml order: ne[0] is the row length). The embedding's pair is
            // stored the other way round: A holds a row per token.
            let (a_want, b_want) = if name == "token_embd.weight" { ([b.dims[0], w[1]], [a.dims[0], w[0]]) } else { ([w[0], b.dims[0]], [a.dims[1], w[1]]) };
            if a.dims != a_want || a.dims.contains(&0) {
                return Err(mismatch(a_name, format!("has shape {}, expected {} for the model's {}", shape(&a.dims), shape(&a_want), shape(w))));
            }
            if b.dims != b_want {
                return Err(mismatch(b_name, format!("has shape {}, expected {} for the model's {}", shape(&b.dims), shape(&b_want), shape(w))));
            }
        }
        self.header_seen = true;
        Ok(())
    }

    fn tensor(&mut self, info: &TensorInfo, data: &[u8]) -> Result<()> {
        let (base, is_a) = match (info.name.strip_suffix(".lora_a"), info.name.strip_suffix(".lora_b")) {
            (Some(n), _) => (n, true),
            (_, Some(n)) => (n, false),
            _ => return Ok(()), // a norm vector, ignored
        };
        let w = self.backend.upload(info, data)?;
        let e = self.weights.entry(base.to_string()).or_insert((None, None));
        if is_a {
            e.0 = Some(w);
        } else {
            e.1 = Some(w);
        }
        Ok(())
    }
}
