//! The name a person knows a model by ("SmolLM2 135M Instruct"), for pages and widgets. GGUF
//! converters fill `general.name` from the training run's directory ("Smollm2 135M 8k Lc100K
//! Mix1 Ep2") and lower-case `general.basename`, while the file people download keeps the
//! publisher's spelling (`SmolLM2-135M-Instruct.Q4_1.gguf`). So: the file's name when it names the
//! same model as the metadata, else basename + size label (+ a finetune that is a word, such as
//! "Instruct"), else `general.name`, else the file's name.

use crate::gguf::Metadata;

/// Quantization suffixes llama.cpp's tools and publishers append to file names.
fn is_quant_label(s: &str) -> bool {
    let s = s.to_ascii_lowercase();
    matches!(s.as_str(), "f32" | "f16" | "bf16" | "fp16" | "fp32")
        || ((s.starts_with('q') || s.starts_with("iq")) && s.chars().nth(if s.starts_with("iq") { 2 } else { 1 }).is_some_and(|c| c.is_ascii_digit()))
}

/// "SmolLM2-135M-Instruct.Q4_1.gguf" -> ("SmolLM2 135M Instruct", Some("Q4_1")).
pub fn split_file_name(file: &str) -> (String, Option<String>) {
    let base = file.rsplit(['/', '\\']).next().unwrap_or(file);
    let base = base.split(['?', '#']).next().unwrap_or(base);
    let mut stem = base.strip_suffix(".gguf").or_else(|| base.strip_suffix(".GGUF")).unwrap_or(base).to_string();
    // A split model's shard number: name-00001-of-00003.
    if let Some((head, tail)) = stem.rsplit_once("-of-") {
        if tail.len() == 5 && tail.bytes().all(|b| b.is_ascii_digit()) {
            if let Some((h, no)) = head.rsplit_once('-') {
                if no.len() == 5 && no.bytes().all(|b| b.is_ascii_digit()) {
                    stem = h.to_string();
                }
            }
        }
    }
    // The quant label follows the last '.' or '-' (Q4_K_M keeps its underscores).
    let mut quant = None;
    if let Some(i) = stem.rfind(['.', '-']) {
        if is_quant_label(&stem[i + 1..]) {
            quant = Some(stem[i + 1..].to_ascii_uppercase());
            stem.truncate(i);
        }
    }
    let name = stem.split(['-', '_', ' ']).filter(|w| !w.is_empty()).collect::<Vec<_>>().join(" ");
    (name, quant)
}

fn squash(s: &str) -> String {
    s.chars().filter(|c| c.is_alphanumeric()).flat_map(char::to_lowercase).collect()
}

/// The display name of a model with metadata `md`, loaded from a file (or URL) named `file`.
pub fn display_name(md: &Metadata, file: Option<&str>) -> String {
    let get = |k: &str| md.opt_str(k).ok().flatten().map(str::trim).filter(|s| !s.is_empty());
    let from_file = file.map(split_file_name).map(|(n, _)| n).filter(|n| !n.is_empty());
    let basename = get("general.basename");
    if let (Some(n), Some(b)) = (&from_file, basename) {
        if squash(n).starts_with(&squash(b)) {
            return n.clone();
        }
    }
    if let Some(b) = basename {
        let mut parts = vec![b.to_string()];
        parts.extend(get("general.size_label").map(str::to_string));
        // "Instruct" or "chat" says what the model is for; "8k-lc100k-mix1-ep2" is a run's name.
        if let Some(f) = get("general.finetune").filter(|f| f.chars().all(|c| c.is_alphabetic() || c == ' ')) {
            parts.push(f.to_string());
        }
        return parts.join(" ");
    }
    get("general.name").map(str::to_string).or(from_file).unwrap_or_else(|| "Model".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::Value;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        Metadata(pairs.iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect())
    }

    #[test]
    fn file_names() {
        assert_eq!(split_file_name("SmolLM2-135M-Instruct.Q4_1.gguf"), ("SmolLM2 135M Instruct".into(), Some("Q4_1".into())));
        assert_eq!(split_file_name("https://h/m/Llama-3.2-1B-Instruct-Q4_K_M.gguf?x=1"), ("Llama 3.2 1B Instruct".into(), Some("Q4_K_M".into())));
        assert_eq!(split_file_name("llama-2-7b.Q8_0-00001-of-00003.gguf"), ("llama 2 7b".into(), Some("Q8_0".into())));
        assert_eq!(split_file_name("demo.gguf"), ("demo".into(), None));
        assert_eq!(split_file_name("tinyllama-1.1b-chat-v1.0.IQ4_XS.gguf"), ("tinyllama 1.1b chat v1.0".into(), Some("IQ4_XS".into())));
    }

    #[test]
    fn names_as_people_know_them() {
        let smol = md(&[
            ("general.name", "Smollm2 135M 8k Lc100K Mix1 Ep2"),
            ("general.basename", "smollm2"),
            ("general.size_label", "135M"),
            ("general.finetune", "8k-lc100k-mix1-ep2"),
        ]);
        assert_eq!(display_name(&smol, Some("models/SmolLM2-135M-Instruct.Q4_1.gguf")), "SmolLM2 135M Instruct");
        // A file name that names something else (a renamed download) does not win.
        assert_eq!(display_name(&smol, Some("model.gguf")), "smollm2 135M");
        let llama = md(&[("general.name", "Llama 3.2 1B Instruct"), ("general.basename", "Llama-3.2"), ("general.size_label", "1B"), ("general.finetune", "Instruct")]);
        assert_eq!(display_name(&llama, None), "Llama-3.2 1B Instruct");
        assert_eq!(display_name(&md(&[("general.name", "hearth-demo (random weights)")]), Some("demo.gguf")), "hearth-demo (random weights)");
        assert_eq!(display_name(&md(&[]), Some("x/my-model.Q4_0.gguf")), "my model");
        assert_eq!(display_name(&md(&[]), None), "Model");
    }
}
