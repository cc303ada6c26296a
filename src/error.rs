//! One error type for the whole engine. Each variant has a stable `code()` that the CLI prints and the
//! JS layer puts on its Error objects, and a message a person can act on.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum HearthError {
    #[error("not a GGUF file: the first bytes are {0:02x?}, expected \"GGUF\"")]
    BadMagic([u8; 4]),
    #[error("GGUF version {0} is not supported (Hearth reads versions 2 and 3)")]
    UnsupportedVersion(u32),
    #[error("the GGUF file is truncated: {what} needs bytes up to offset {needed}, but the file ends at {available}")]
    Truncated { what: String, needed: u64, available: u64 },
    #[error("the GGUF file is corrupt: {0}")]
    Corrupt(String),
    #[error("tensor '{name}' has type {ty}, which Hearth does not support (supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)")]
    UnsupportedTensorType { name: String, ty: String },
    #[error("the model has no tensor '{0}'")]
    MissingTensor(String),
    #[error("tensor '{name}' has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, actual: Vec<usize> },
    #[error("the model's metadata has no '{0}'")]
    MissingMetadata(String),
    #[error("metadata '{key}' is invalid: {why}")]
    BadMetadata { key: String, why: String },
    #[error("architecture '{0}' is not supported (Hearth runs llama-family models: general.architecture = llama)")]
    UnsupportedArchitecture(String),
    #[error("tokenizer '{0}' is not supported (Hearth reads 'llama' SentencePiece and 'gpt2' byte-level BPE vocabularies)")]
    UnsupportedTokenizer(String),
    #[error("the prompt is {tokens} tokens but the context holds {context}; shorten the prompt or raise the context size")]
    ContextOverflow { tokens: usize, context: usize },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("the model needs {needed} bytes but at most {limit} can be allocated here")]
    ModelTooBig { needed: u64, limit: u64 },
    #[error("the chat template failed: {0}")]
    ChatTemplate(String),
    #[error("generation was aborted")]
    Aborted,
    #[error("compute failed: {0}")]
    Compute(String),
    #[error("i/o error: {0}")]
    Io(String),
    #[error("the WebGPU backend is not available here: {0}")]
    BackendUnavailable(String),
    #[error("the GPU failed: {0}")]
    Gpu(String),
    #[error("the GPU device was lost ({0}); the next request runs on the CPU")]
    DeviceLost(String),
    #[error("not a LoRA adapter: {0}")]
    NotAnAdapter(String),
    /// An adapter made for another base model: `what` names the tensor (or metadata key).
    #[error("the LoRA adapter does not match the loaded model: {what}: {why}")]
    AdapterMismatch { what: String, why: String },
    /// Saved-session bytes that are not one, or are damaged or cut short.
    #[error("not a saved Hearth session, or a damaged one: {0}")]
    BadSession(String),
    /// A saved session made with another model, context size or cache type.
    #[error("the saved session does not match: {0}")]
    SessionMismatch(String),
}

/// Longest message shown: names and strings from a file can be any length.
const MAX_MESSAGE_CHARS: usize = 1000;

impl HearthError {
    /// The message as people see it (the CLI's error line, a JS Error's message): one line,
    /// whatever a file put into the names and strings it quotes (control characters and NULs
    /// escaped as \n, \u{0}, ...), and at most `MAX_MESSAGE_CHARS` characters.
    pub fn message(&self) -> String {
        let mut out = String::new();
        // Counted after escaping: a string of NULs from the file grows six-fold as \u{0}.
        let mut chars = 0;
        for c in self.to_string().chars() {
            let escaped = c.is_control() || c == '\u{2028}' || c == '\u{2029}';
            let width = if escaped { c.escape_default().count() } else { 1 };
            if chars + width > MAX_MESSAGE_CHARS {
                out.push('…');
                break;
            }
            chars += width;
            if escaped {
                out.extend(c.escape_default());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Stable machine-readable code, used by the CLI's JSON errors and the JS `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadMagic(_) => "bad_magic",
            Self::UnsupportedVersion(_) => "unsupported_version",
            Self::Truncated { .. } => "truncated",
            Self::Corrupt(_) => "corrupt",
            Self::UnsupportedTensorType { .. } => "unsupported_tensor_type",
            Self::MissingTensor(_) => "missing_tensor",
            Self::ShapeMismatch { .. } => "shape_mismatch",
            Self::MissingMetadata(_) => "missing_metadata",
            Self::BadMetadata { .. } => "bad_metadata",
            Self::UnsupportedArchitecture(_) => "unsupported_architecture",
            Self::UnsupportedTokenizer(_) => "unsupported_tokenizer",
            Self::ContextOverflow { .. } => "context_overflow",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::ModelTooBig { .. } => "model_too_big",
            Self::ChatTemplate(_) => "chat_template",
            Self::Aborted => "aborted",
            Self::Compute(_) => "compute",
            Self::Io(_) => "io",
            Self::BackendUnavailable(_) => "backend_unavailable",
            Self::Gpu(_) => "gpu",
            Self::DeviceLost(_) => "device_lost",
            Self::NotAnAdapter(_) => "not_an_adapter",
            Self::AdapterMismatch { .. } => "adapter_mismatch",
            Self::BadSession(_) => "bad_session",
            Self::SessionMismatch(_) => "session_mismatch",
        }
    }
}

#[cfg(not(any(target_arch = "wasm32", target_arch = "wasm64")))]
impl From<candle_core::Error> for HearthError {
    fn from(e: candle_core::Error) -> Self {
        HearthError::Compute(e.to_string())
    }
}

impl From<std::io::Error> for HearthError {
    fn from(e: std::io::Error) -> Self {
        HearthError::Io(e.to_string())
    }
}

pub type Result<T, E = HearthError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::HearthError;

    #[test]
    fn messages_are_one_line_and_bounded() {
        let e = HearthError::UnsupportedArchitecture("llama\n\0x\r\u{2028}".into());
        let m = e.message();
        assert!(!m.chars().any(|c| c.is_control() || c == '\u{2028}'), "{m:?}");
        assert!(m.contains("llama\\n\\u{0}x\\r\\u{2028}"), "{m:?}");
        let long = HearthError::MissingTensor("a".repeat(100_000)).message();
        assert_eq!(long.chars().count(), 1001);
        assert!(long.ends_with('…'));
        // Escaping counts: 100 000 NULs (the fuzzer's seed 1013981 had a key of them) stay bounded.
        let nuls = HearthError::MissingTensor("\0".repeat(100_000)).message();
        assert!(nuls.chars().count() <= 1001 && nuls.ends_with('…'), "{}", nuls.chars().count());
    }
}
