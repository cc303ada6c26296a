//! Builds a `Llama` from a GGUF stream: the header fixes the config and the expected shape of
//! every tensor; each tensor is checked and placed in the backend the moment its bytes arrive.

use super::{Layer, Llama, LlamaConfig};
use crate::backend::{Backend, Rope};
use crate::error::{HearthError, Result};
use crate::gguf::{Header, TensorInfo, TensorSink};
use std::collections::HashMap;

pub struct ModelLoader<B: Backend> {
    backend: Option<B>,
    config: Option<LlamaConfig>,
    expected: HashMap<String, Vec<u64>>,
    weights: HashMap<String, B::Weight>,
}

impl<B: Backend> ModelLoader<B> {
    pub fn new(backend: B) -> Self {
        Self { backend: Some(backend), config: None, expected: HashMap::new(), weights: HashMap::new() }
    }

    fn take(&mut self, name: &str) -> Result<B::Weight> {
        self.weights.remove(name).ok_or_else(|| HearthError::MissingTensor(name.to_string()))
    }

    fn take_vec(&mut self, name: &str) -> Result<Vec<f32>> {
        let w = self.take(name)?;
        self.backend.as_ref().unwrap().read_weight(&w)
    }

    /// All tensors have arrived: assemble the model.
    pub fn finish(mut self) -> Result<Llama<B>> {
        let config = self.config.clone().ok_or_else(|| HearthError::Corrupt("no GGUF header was read".into()))?;
        let tok_embd = self.take("token_embd.weight")?;
        let output = self.weights.remove("output.weight");
        let output_norm = self.take_vec("output_norm.weight")?;
        let freq_factors = match self.weights.contains_key("rope_freqs.weight") {
            true => Some(self.take_vec("rope_freqs.weight")?),
            false => None,
        };
        let mut layers = Vec::with_capacity(config.n_layer);
        for i in 0..config.n_layer {
            let n = |s: &str| format!("blk.{i}.{s}.weight");
            layers.push(Layer {
                attn_norm: self.take_vec(&n("attn_norm"))?,
                wq: self.take(&n("attn_q"))?,
                wk: self.take(&n("attn_k"))?,
                wv: self.take(&n("attn_v"))?,
                wo: self.take(&n("attn_output"))?,
                ffn_norm: self.take_vec(&n("ffn_norm"))?,
                w_gate: self.take(&n("ffn_gate"))?,
                w_up: self.take(&n("ffn_up"))?,
                w_down: self.take(&n("ffn_down"))?,
            });
        }
        let rope = Rope { n_rot: config.n_rot, freq_base: config.rope_base, freq_scale: config.rope_freq_scale, freq_factors };
        Ok(Llama { config, backend: self.backend.take().unwrap(), tok_embd, output, output_norm, layers, rope })
    }
}

impl<B: Backend> TensorSink for ModelLoader<B> {
    fn header(&mut self, header: &Header) -> Result<()> {
        let c = LlamaConfig::from_metadata(&header.metadata)?;
        let (e, v, q, kv, ff) = (c.n_embd as u64, c.n_vocab as u64, (c.n_head * c.head_dim) as u64, c.kv_dim() as u64, c.n_ff as u64);
        let mut x = HashMap::new();
        x.insert("token_embd.weight".to_string(), vec![e, v]);
        x.insert("output.weight".to_string(), vec![e, v]);
        x.insert("output_norm.weight".to_string(), vec![e]);
        x.insert("rope_freqs.weight".to_string(), vec![c.n_rot as u64 / 2]);
        for i in 0..c.n_layer {
            for (s, d) in [
                ("attn_norm", vec![e]),
                ("attn_q", vec![e, q]),
                ("attn_k", vec![e, kv]),
                ("attn_v", vec![e, kv]),
                ("attn_output", vec![q, e]),
                ("ffn_norm", vec![e]),
                ("ffn_gate", vec![e, ff]),
                ("ffn_up", vec![e, ff]),
                ("ffn_down", vec![ff, e]),
            ] {
                x.insert(format!("blk.{i}.{s}.weight"), d);
            }
        }
        // Fail before any weight is read: unsupported types and missing tensors, named.
        for t in &header.tensors {
            if x.contains_key(&t.name) && !t.ty.is_supported() {
                return Err(HearthError::UnsupportedTensorType { name: t.name.clone(), ty: t.ty.name() });
            }
        }
        for name in x.keys() {
            let optional = name == "output.weight" || name == "rope_freqs.weight";
            if !optional && header.tensor(name).is_none() {
                return Err(HearthError::MissingTensor(name.clone()));
            }
        }
        if let Some(t) = header.tensors.iter().find(|t| t.name.ends_with(".bias")) {
            return Err(HearthError::BadMetadata { key: t.name.clone(), why: "bias tensors are not supported".into() });
        }
        self.expected = x;
        self.config = Some(c);
        Ok(())
    }

    fn tensor(&mut self, info: &TensorInfo, data: &[u8]) -> Result<()> {
        let Some(dims) = self.expected.get(&info.name) else {
            return Ok(()); // not used by the llama graph
        };
        if *dims != info.dims {
            let rev = |d: &[u64]| d.iter().rev().map(|&x| x as usize).collect();
            return Err(HearthError::ShapeMismatch { name: info.name.clone(), expected: rev(dims), actual: rev(&info.dims) });
        }
        let w = self.backend.as_ref().unwrap().upload(info, data)?;
        self.weights.insert(info.name.clone(), w);
        Ok(())
    }
}
