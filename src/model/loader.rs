//! Builds a `Llama` from a GGUF stream: the header fixes the config and the expected shape of
//! every tensor; each tensor is checked and placed in the backend the moment its bytes arrive.

use super::{Adapters, Ffn, Layer, Llama, LlamaConfig, SharedExpert};
use crate::backend::{Backend, Rope};
use crate::error::{HearthError, Result};
use crate::gguf::{Header, Take, TensorInfo, TensorSink, PIECE_BYTES};
use std::collections::HashMap;

pub struct ModelLoader<B: Backend> {
    backend: Option<B>,
    config: Option<LlamaConfig>,
    expected: HashMap<String, Vec<u64>>,
    weights: HashMap<String, B::Weight>,
    /// The weight whose pieces are arriving.
    pending: Option<B::Pending>,
    /// `split.count` of the first header (1 for a whole file).
    split_count: Option<u32>,
    /// Headers read so far (one per shard).
    shards_seen: u32,
    /// Tensors announced by all headers so far, for `split.tensors.count`.
    tensors_seen: u64,
    split_tensors: Option<u64>,
}

impl<B: Backend> ModelLoader<B> {
    pub fn new(backend: B) -> Self {
        Self {
            backend: Some(backend),
            config: None,
            expected: HashMap::new(),
            weights: HashMap::new(),
            pending: None,
            split_count: None,
            shards_seen: 0,
            tensors_seen: 0,
            split_tensors: None,
        }
    }

    /// How many files the model is split into, once the first header has been read.
    pub fn split_count(&self) -> Option<u32> {
        self.split_count
    }

    /// Shard headers read so far.
    pub fn shards_seen(&self) -> u32 {
        self.shards_seen
    }

    fn take(&mut self, name: &str) -> Result<B::Weight> {
        self.weights.remove(name).ok_or_else(|| HearthError::MissingTensor(name.to_string()))
    }

    fn take_vec(&mut self, name: &str) -> Result<Vec<f32>> {
        let w = self.take(name)?;
        self.backend.as_ref().unwrap().read_weight(&w)
    }

    fn take_vector(&mut self, name: &str) -> Result<B::Vector> {
        let v = self.take_vec(name)?;
        self.backend.as_ref().unwrap().vector(v)
    }

    /// All tensors have arrived: assemble the model.
    pub fn finish(mut self) -> Result<Llama<B>> {
        let config = self.config.clone().ok_or_else(|| HearthError::Corrupt("no GGUF header was read".into()))?;
        let count = self.split_count.unwrap_or(1);
        if self.shards_seen < count {
            return Err(HearthError::Truncated {
                what: format!("shard {} of {count} of the split model", self.shards_seen + 1),
                needed: count as u64,
                available: self.shards_seen as u64,
            });
        }
        if let Some(n) = self.split_tensors.filter(|&n| n != self.tensors_seen) {
            return Err(HearthError::BadMetadata {
                key: "split.tensors.count".into(),
                why: format!("says {n} tensors but the shards hold {}", self.tensors_seen),
            });
        }
        let tok_embd = self.take("token_embd.weight")?;
        let output = self.weights.remove("output.weight");
        let output_norm = self.take_vector("output_norm.weight")?;
        let freq_factors = match self.weights.contains_key("rope_freqs.weight") {
            true => Some(self.take_vec("rope_freqs.weight")?),
            false => None,
        };
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(Layer {
                attn_norm: self.take_vector(&n("attn_norm"))?,
                wq: self.take(&n("attn_q"))?,
                wk: self.take(&n("attn_k"))?,
                wv: self.take(&n("attn_v"))?,
                wo: self.take(&n("attn_output"))?,
                ffn_norm: self.take_vector(&n("ffn_norm"))?,
                ffn: match config.is_moe_layer(i) {
                    false => Ffn::Dense { gate: self.take(&n("ffn_gate"))?, up: self.take(&n("ffn_up"))?, down: self.take(&n("ffn_down"))? },
                    true => Ffn::Moe {
                        router: self.take(&n("ffn_gate_inp"))?,
                        gate: self.take(&n("ffn_gate_exps"))?,
                        up: self.take(&n("ffn_up_exps"))?,
                        down: self.take(&n("ffn_down_exps"))?,
                        shared: match config.llama4 {
                            Some(_) => Some(SharedExpert {
                                gate: self.take(&n("ffn_gate_shexp"))?,
                                up: self.take(&n("ffn_up_shexp"))?,
                                down: self.take(&n("ffn_down_shexp"))?,
                            }),
                            None => None,
                        },
                    },
                },
            });
        }
        let rope = Rope { n_rot: config.n_rot, freq_base: config.rope_base, freq_scale: config.rope_freq_scale, freq_factors };
        Ok(Llama { config, backend: self.backend.take().unwrap(), tok_embd, output, output_norm, layers, rope, adapters: std::sync::RwLock::new(Adapters::default()) })
    }
}

impl<B: Backend> TensorSink for ModelLoader<B> {
    fn header(&mut self, header: &Header) -> Result<()> {
        let md = &header.metadata;
        let no = md.opt_u64("split.no")?.unwrap_or(0);
        let count = md.opt_u64("split.count")?.unwrap_or(1);
        let bad = |key: &str, why: String| HearthError::BadMetadata { key: key.into(), why };
        if no != self.shards_seen as u64 {
            return Err(bad("split.no", format!("this file is shard {} but shard {} was expected", no + 1, self.shards_seen + 1)));
        }
        self.shards_seen += 1;
        self.tensors_seen += header.tensors.len() as u64;
        if let Some(first) = self.split_count {
            // A later shard of a split model: its own tensors, nothing else.
            if count != first as u64 {
                return Err(bad("split.count", format!("{count} in shard {} but {first} in the first shard", no + 1)));
            }
            return self.check_types(header);
        }
        if count == 0 || count > 9999 {
            return Err(bad("split.count", format!("{count} is not a valid number of shards")));
        }
        self.split_count = Some(count as u32);
        self.split_tensors = md.opt_u64("split.tensors.count")?;
        let c = LlamaConfig::from_metadata(md)?;
        // Each layer has 9 tensors: a layer count the file cannot hold fails before any work is
        // sized by it (a split model's count is what its first shard says the shards hold).
        let held = self.split_tensors.unwrap_or(header.tensors.len() as u64);
        if c.n_layer as u64 * 9 > held {
            return Err(bad(&format!("{}.block_count", md.str("general.architecture")?), format!("{} layers need at least {} tensors, but the file holds {held}", c.n_layer, c.n_layer * 9)));
        }
        let x = tensor_shapes(&c);
        // Fail before any weight is read: missing tensors named (for a whole file; a split
        // model's are spread over its shards and checked at the end), unsupported types.
        if count == 1 {
            for (name, _) in &x {
                let optional = name == "output.weight" || name == "rope_freqs.weight";
                if !optional && header.tensor(name).is_none() {
                    return Err(HearthError::MissingTensor(name.clone()));
                }
            }
        }
        self.expected = x.into_iter().collect();
        self.config = Some(c);
        self.check_types(header)
    }

    /// Every tensor the graph uses goes to the backend in pieces, each written straight into the
    /// weight's final storage (`Backend::begin_weight`); the others are skipped unread.
    fn begin(&mut self, info: &TensorInfo) -> Result<Take> {
        let Some(dims) = self.expected.get(&info.name) else {
            return Ok(Take::Skip); // not used by the llama graph
        };
        if self.weights.contains_key(&info.name) {
            return Err(HearthError::Corrupt(format!("tensor '{}' appears twice", info.name)));
        }
        if *dims != info.dims {
            let rev = |d: &[u64]| d.iter().rev().map(|&x| x as usize).collect();
            return Err(HearthError::ShapeMismatch { name: info.name.clone(), expected: rev(dims), actual: rev(&info.dims) });
        }
        self.pending = Some(self.backend.as_ref().unwrap().begin_weight(info)?);
        Ok(Take::Pieces(PIECE_BYTES))
    }

    fn piece(&mut self, _info: &TensorInfo, data: &[u8]) -> Result<()> {
        let p = self.pending.as_mut().expect("begin made the pending weight");
        self.backend.as_ref().unwrap().write_weight(p, data)
    }

    fn end(&mut self, info: &TensorInfo) -> Result<()> {
        let p = self.pending.take().expect("begin made the pending weight");
        let w = self.backend.as_ref().unwrap().finish_weight(p)?;
        self.weights.insert(info.name.clone(), w);
        Ok(())
    }

    /// A whole tensor (what `begin` never asks for), as one piece.
    fn tensor(&mut self, info: &TensorInfo, data: &[u8]) -> Result<()> {
        match self.begin(info)? {
            Take::Skip => Ok(()),
            _ => {
                self.piece(info, data)?;
                self.end(info)
            }
        }
    }
}

impl<B: Backend> ModelLoader<B> {
    /// The tensors of one header that the graph uses must have supported types; no biases.
    fn check_types(&self, header: &Header) -> Result<()> {
        for t in &header.tensors {
            if self.expected.contains_key(&t.name) && !t.ty.is_supported() {
                return Err(HearthError::UnsupportedTensorType { name: t.name.clone(), ty: t.ty.name() });
            }
        }
        if let Some(t) = header.tensors.iter().find(|t| t.name.ends_with(".bias")) {
            return Err(HearthError::BadMetadata { key: t.name.clone(), why: "bias tensors are not supported".into() });
        }
        Ok(())
    }
}

/// Every tensor the llama graph reads and its dims (ggml order), in graph order, so that of
/// several missing tensors the same one is named every time. `output.weight` and
/// `rope_freqs.weight` are optional.
pub(super) fn tensor_shapes(c: &LlamaConfig) -> Vec<(String, Vec<u64>)> {
    let (e, v, q, kv, ff, fx) = (c.n_embd as u64, c.n_vocab as u64, (c.n_head * c.head_dim) as u64, c.kv_dim() as u64, c.n_ff as u64, c.n_ff_exp as u64);
    let mut x = Vec::new();
    x.push(("token_embd.weight".to_string(), vec![e, v]));
    x.push(("output.weight".to_string(), vec![e, v]));
    x.push(("output_norm.weight".to_string(), vec![e]));
    x.push(("rope_freqs.weight".to_string(), vec![c.n_rot as u64 / 2]));
    for i in 0..c.n_layer {
        let mut ffn = match c.is_moe_layer(i) {
            false => vec![("ffn_gate", vec![e, ff]), ("ffn_up", vec![e, ff]), ("ffn_down", vec![ff, e])],
            // As llama.cpp names and shapes them: experts stacked along a third dimension.
            true => {
                let n = c.n_expert as u64;
                vec![("ffn_gate_inp", vec![e, n]), ("ffn_gate_exps", vec![e, fx, n]), ("ffn_up_exps", vec![e, fx, n]), ("ffn_down_exps", vec![fx, e, n])]
            }
        };
        // Llama 4's shared expert, as wide as one routed expert.
        if c.llama4.is_some() && c.is_moe_layer(i) {
            ffn.extend([("ffn_gate_shexp", vec![e, fx]), ("ffn_up_shexp", vec![e, fx]), ("ffn_down_shexp", vec![fx, e])]);
        }
        for (s, d) in [
            ("attn_norm", vec![e]),
            ("attn_q", vec![e, q]),
            ("attn_k", vec![e, kv]),
            ("attn_v", vec![e, kv]),
            ("attn_output", vec![q, e]),
            ("ffn_norm", vec![e]),
        ]
        .into_iter()
        .chain(ffn)
        {
            x.push((format!("blk.{i}.{s}.weight"), d));
        }
    }
    x
}
