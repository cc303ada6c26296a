//! `inspectHeader`: what loading a model will need (`memory::plan`), from the first bytes of its
//! GGUF file, so that the page can tell before downloading the weights whether they fit.

use wasm_bindgen::prelude::*;

use super::{js_error, set};
use crate::backend::KvType;
use crate::error::HearthError;
use crate::memory::{self, Needs};

/// `prefix`: the file's first bytes. Returns `{needed}` (the bytes the header needs, more than
/// `prefix` holds) or the plan: `{name, displayName, architecture, contextLength, contextSize,
/// kvType, kvBytesPerValue, fileBytes, headerBytes, splitCount, cpu: {weights, kvCache, scratch,
/// other, total}, webgpu: {...}, webgpuHeap, webgpuLargestBuffer}` (bytes). `contextSize`: 0 or
/// absent for the model's (capped at 2048, as loading does); `kvType`: "f16" (default), "q8_0",
/// "f32". A corrupt header throws its HearthError.
#[wasm_bindgen(js_name = inspectHeader)]
pub fn inspect_header(prefix: &[u8], context_size: Option<f64>, kv_type: Option<String>, file_name: Option<String>) -> Result<JsValue, JsValue> {
    let header = match crate::gguf::parse_header(prefix) {
        Err(HearthError::Truncated { needed, .. }) => {
            let o = js_sys::Object::new();
            set(&o, "needed", needed as f64);
            return Ok(o.into());
        }
        r => r.map_err(js_error)?,
    };
    let kv = kv_type.as_deref().map_or(Ok(KvType::default()), KvType::parse).map_err(js_error)?;
    let ctx = context_size.unwrap_or(0.0);
    if !(ctx >= 0.0 && ctx.fract() == 0.0 && ctx < 1e9) {
        return Err(js_error(HearthError::InvalidArgument(format!("contextSize must be a positive integer, got {ctx}"))));
    }
    let plan = memory::plan(&header, ctx as u64, super::DEFAULT_CONTEXT as u64, kv).map_err(js_error)?;
    let md = &header.metadata;
    let o = js_sys::Object::new();
    set(&o, "name", md.opt_str("general.name").ok().flatten().unwrap_or("").to_string());
    set(&o, "displayName", crate::model::display_name(md, file_name.as_deref()));
    let arch = md.opt_str("general.architecture").ok().flatten().unwrap_or("");
    set(&o, "architecture", arch.to_string());
    let train = md.opt_u64(&format!("{}.context_length", if arch.is_empty() { "llama" } else { arch })).ok().flatten().unwrap_or(0);
    set(&o, "contextLength", train as f64);
    set(&o, "contextSize", plan.context_size as f64);
    set(&o, "kvType", kv.name());
    set(&o, "kvBytesPerValue", plan.kv_bytes_per_value);
    set(&o, "fileBytes", plan.file_bytes as f64);
    set(&o, "headerBytes", header.data_offset as f64);
    set(&o, "splitCount", md.opt_u64("split.count").ok().flatten().unwrap_or(1) as f64);
    set(&o, "cpu", needs(&plan.cpu));
    set(&o, "webgpu", needs(&plan.gpu));
    set(&o, "webgpuHeap", plan.gpu_heap as f64);
    set(&o, "webgpuLargestBuffer", plan.gpu_largest_buffer as f64);
    Ok(o.into())
}

fn needs(n: &Needs) -> js_sys::Object {
    let o = js_sys::Object::new();
    set(&o, "weights", n.weights as f64);
    set(&o, "kvCache", n.kv_cache as f64);
    set(&o, "scratch", n.scratch as f64);
    set(&o, "other", n.other as f64);
    set(&o, "total", n.total() as f64);
    o
}
