//! Constrained output: a token mask so that the generated text is always JSON (JSON mode) or
//! JSON matching a schema, as llama.cpp's grammar sampler and OpenAI's `response_format` do.
//!
//! The schema (or "any object" for JSON mode) is compiled to a small grammar of nodes (object with
//! known keys, array, string, number, literal set, alternatives). A byte-level pushdown automaton
//! runs that grammar: its state is a set of stacks of `Copy` frames. To mask, every token's bytes
//! are walked through the automaton along a trie of the vocabulary's pieces (built once per
//! tokenizer), so a shared prefix is checked once and a dead prefix prunes its whole subtree.
//!
//! Termination: whitespace between tokens is bounded (`max_whitespace`, 8 bytes in a row by
//! default), nesting is bounded (`max_depth`, 32), and with a token budget
//! ([`Constraint::set_token_budget`]) a token is allowed only if the shortest completion after it
//! still fits in the tokens left — so the value closes in time instead of being cut off.

mod automaton;
mod schema;

use crate::error::{HearthError, Result};
use crate::tokenizer::Tokenizer;
use automaton::{Grammar, Stack};

pub const DEFAULT_MAX_DEPTH: usize = 32;
pub const DEFAULT_MAX_WHITESPACE: u8 = 8;

/// The vocabulary as the mask sees it: each token's bytes in a trie, and the end-of-generation ids.
pub struct TokenIndex {
    vocab_size: usize,
    eog: Vec<u32>,
    /// Node `i`: its edges are `edges[edge_start..edge_start + edge_len]`, the tokens whose bytes
    /// end here `tokens[tok_start..tok_start + tok_len]`. Node 0 is the root.
    nodes: Vec<TrieNode>,
    edges: Vec<(u8, u32)>,
    tokens: Vec<u32>,
    pieces: Vec<Option<Vec<u8>>>,
    max_len: usize,
}

#[derive(Clone, Copy, Default)]
struct TrieNode {
    edge_start: u32,
    edge_len: u32,
    tok_start: u32,
    tok_len: u32,
}

impl TokenIndex {
    /// Index a tokenizer's vocabulary. Control tokens and tokens without bytes are never allowed
    /// (except end-of-generation tokens, once the value is complete).
    pub fn new(tok: &Tokenizer) -> Self {
        let n = tok.vocab_size();
        let pieces = (0..n as u32)
            .map(|id| {
                if tok.is_eog(id) || tok.is_control(id) {
                    return None;
                }
                let p = tok.token_to_piece(id, false);
                (!p.is_empty()).then_some(p)
            })
            .collect();
        Self::from_pieces(pieces, tok.eog_ids())
    }

    /// Index arbitrary pieces (`None`: a token that is never allowed), e.g. for a synthetic vocabulary.
    pub fn from_pieces(pieces: Vec<Option<Vec<u8>>>, eog: Vec<u32>) -> Self {
        let mut ids: Vec<u32> = (0..pieces.len() as u32).filter(|&i| pieces[i as usize].is_some()).collect();
        ids.sort_by(|&a, &b| pieces[a as usize].cmp(&pieces[b as usize]));
        let max_len = pieces.iter().flatten().map(|p| p.len()).max().unwrap_or(0);
        let mut ix = Self { vocab_size: pieces.len(), eog, nodes: Vec::new(), edges: Vec::new(), tokens: Vec::new(), pieces, max_len };
        ix.nodes.push(TrieNode::default());
        ix.build(0, &ids, 0);
        ix
    }

    fn build(&mut self, node: usize, ids: &[u32], depth: usize) {
        let ends = ids.iter().take_while(|&&i| self.pieces[i as usize].as_ref().unwrap().len() == depth).count();
        self.nodes[node].tok_start = self.tokens.len() as u32;
        self.nodes[node].tok_len = ends as u32;
        self.tokens.extend_from_slice(&ids[..ends]);
        let rest = &ids[ends..];
        // Group the rest by their byte at `depth` (they are sorted, so groups are runs).
        let mut groups = Vec::new();
        let mut i = 0;
        while i < rest.len() {
            let b = self.pieces[rest[i] as usize].as_ref().unwrap()[depth];
            let mut j = i + 1;
            while j < rest.len() && self.pieces[rest[j] as usize].as_ref().unwrap()[depth] == b {
                j += 1;
            }
            groups.push((b, i, j));
            i = j;
        }
        let start = self.edges.len();
        self.nodes[node].edge_start = start as u32;
        self.nodes[node].edge_len = groups.len() as u32;
        for &(b, _, _) in &groups {
            self.nodes.push(TrieNode::default());
            self.edges.push((b, (self.nodes.len() - 1) as u32));
        }
        for (k, &(_, i, j)) in groups.iter().enumerate() {
            let child = self.edges[start + k].1 as usize;
            self.build(child, &rest[i..j], depth + 1);
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Number of trie nodes (for diagnostics).
    pub fn trie_nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.eog.contains(&id)
    }

    /// The bytes of an allowed-able token (`None` for control and empty tokens).
    pub fn piece(&self, id: u32) -> Option<&[u8]> {
        self.pieces.get(id as usize).and_then(|p| p.as_deref())
    }
}

/// A constraint on generated text: JSON mode or a JSON schema. Call [`mask`](Self::mask) on the
/// logits before sampling and [`accept`](Self::accept) with the token chosen, both with the
/// vocabulary's [`TokenIndex`] (an engine builds one and keeps it: `Engine::token_index`).
#[derive(Clone)]
pub struct Constraint {
    grammar: Grammar,
    state: Vec<Stack>,
    budget: Option<usize>,
    accepted: usize,
}

impl std::fmt::Debug for Constraint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Constraint").field("stacks", &self.state.len()).field("accepted", &self.accepted).finish()
    }
}

impl Constraint {
    fn from_compiler(mut c: schema::Compiler, root: automaton::NodeId) -> Result<Self> {
        let key_string = c.any(); // ensures the "any" nodes exist; free keys use its string node
        let key_string = match &c.nodes[key_string as usize] {
            automaton::Node::AnyOf(alts) => alts[2],
            _ => unreachable!(),
        };
        let mut grammar = Grammar {
            nodes: std::mem::take(&mut c.nodes),
            root,
            minlen: Vec::new(),
            key_string,
            max_depth: DEFAULT_MAX_DEPTH,
            max_ws: DEFAULT_MAX_WHITESPACE,
        };
        grammar.finish();
        if grammar.minlen[root as usize] >= automaton::INF {
            return Err(HearthError::InvalidArgument(
                "invalid JSON schema: it admits no finite value (a required recursion without a way out)".into(),
            ));
        }
        grammar.check_alternatives_acyclic()?;
        let state = grammar.initial();
        Ok(Self { grammar, state, budget: None, accepted: 0 })
    }

    /// Any JSON value whose top level is an object (OpenAI's `{"type": "json_object"}`).
    pub fn json_object() -> Self {
        let empty = serde_json::Value::Null;
        let mut c = schema::Compiler::new(&empty);
        let root = c.any_object();
        Self::from_compiler(c, root).expect("the JSON grammar compiles")
    }

    /// Text matching a JSON schema (OpenAI's `{"type": "json_schema", "json_schema": {"schema": ..}}`).
    /// Supported: `type` (one or an array, e.g. `["string", "null"]`), `properties`, `required`,
    /// `additionalProperties` (false when absent; `true`/a schema only on objects without
    /// `properties`), `items`, `minItems`, `maxItems`, `minLength`, `maxLength`, `enum`, `const`,
    /// `anyOf`, `oneOf` (as anyOf: exclusivity is not enforced), `$ref` to `#`, `#/$defs/..` or
    /// `#/definitions/..`, and annotations (`title`, `description`, `default`, ..). Any other
    /// keyword (`pattern`, `format`, `minimum`, ...) is an `InvalidArgument` error naming it.
    pub fn json_schema(schema: &serde_json::Value) -> Result<Self> {
        let mut c = schema::Compiler::new(schema);
        let root = c.compile(schema)?;
        Self::from_compiler(c, root)
    }

    /// A function call as tool-calling models write one: `{"<name_key>": "<name>", "<args_key>":
    /// <arguments>}`, the two keys in that order, one alternative per function, the arguments
    /// matching that function's parameter schema (each compiled as a document of its own, so its
    /// `$ref`s resolve in it; the subset of `json_schema`). `list`: `Some(max)` for calls in a
    /// JSON array, at least one and at most `max` (Mistral's `[TOOL_CALLS][...]`).
    pub fn function_calls(functions: &[(&str, &serde_json::Value)], name_key: &str, args_key: &str, list: Option<u32>) -> Result<Self> {
        if functions.is_empty() {
            return Err(HearthError::InvalidArgument("a function call needs at least one function".into()));
        }
        let empty = serde_json::Value::Null;
        let mut c = schema::Compiler::new(&empty);
        let key = |k: &str| {
            let mut key = serde_json::to_vec(&serde_json::Value::String(k.into())).unwrap();
            key.remove(0);
            key
        };
        let mut alts = Vec::new();
        for (name, params) in functions {
            let args = c
                .compile_rooted(params)
                .map_err(|e| HearthError::InvalidArgument(format!("the parameters of function '{name}': {e}")))?;
            let name_node = c.push_node(automaton::Node::Lit(vec![serde_json::to_vec(&serde_json::Value::String((*name).into())).unwrap()]));
            alts.push(c.push_node(automaton::Node::Object {
                props: vec![automaton::Prop { key: key(name_key), node: name_node }, automaton::Prop { key: key(args_key), node: args }],
                required: 0b11,
                additional: None,
                ordered: true,
            }));
        }
        let mut root = if alts.len() == 1 { alts[0] } else { c.push_node(automaton::Node::AnyOf(alts)) };
        if let Some(max) = list {
            root = c.push_node(automaton::Node::Array { items: root, min: 1, max: max.max(1) });
        }
        Self::from_compiler(c, root)
    }

    /// A Llama Guard verdict: `safe`, or `unsafe`, a newline and one or more of `codes` (each at
    /// most once, in any order) separated by commas, after at most two whitespace bytes (the
    /// official templates end at the assistant header, and the models answer `\n\nsafe`).
    pub fn verdict(codes: &[&str]) -> Result<Self> {
        if codes.is_empty() || codes.len() > 64 {
            return Err(HearthError::InvalidArgument(format!("a verdict needs 1 to 64 category codes, not {}", codes.len())));
        }
        for (i, c) in codes.iter().enumerate() {
            if c.is_empty() || c.bytes().any(|b| b == b',' || b.is_ascii_whitespace()) || codes[..i].contains(c) {
                return Err(HearthError::InvalidArgument(format!("category code {c:?} is empty, repeated, or holds a comma or whitespace")));
            }
        }
        let empty = serde_json::Value::Null;
        let mut c = schema::Compiler::new(&empty);
        let root = c.push_node(automaton::Node::Verdict { codes: codes.iter().map(|c| c.as_bytes().to_vec()).collect() });
        Ok(Self::from_compiler(c, root)?.with_max_whitespace(2))
    }

    /// Nesting deeper than this many objects/arrays is not allowed (default 32).
    pub fn with_max_depth(mut self, depth: usize) -> Self {
        self.grammar.max_depth = depth;
        self
    }

    /// At most this many whitespace bytes in a row between JSON tokens (default 8).
    pub fn with_max_whitespace(mut self, n: u8) -> Self {
        self.grammar.max_ws = n;
        self
    }

    /// Close out within this many tokens from now: a token is allowed only if the shortest
    /// completion after it fits in the tokens left (the end-of-generation token is not counted).
    /// Needs single-byte tokens for the bytes of the shortest completion, as byte-fallback and
    /// byte-level vocabularies have.
    pub fn set_token_budget(&mut self, tokens: Option<usize>) {
        self.budget = tokens.map(|t| t + self.accepted);
    }

    /// Back to the start (the budget, if any, counts from here again).
    pub fn reset(&mut self) {
        self.budget = self.budget.map(|b| b - self.accepted);
        self.accepted = 0;
        self.state = self.grammar.initial();
    }

    /// The text so far is a complete value.
    pub fn is_complete(&self) -> bool {
        self.state.iter().any(|s| self.grammar.can_end(s))
    }

    /// The fewest bytes that would complete the value from here.
    pub fn bytes_to_complete(&self) -> u32 {
        self.state.iter().map(|s| self.grammar.dist(s)).min().unwrap_or(automaton::INF)
    }

    /// Set the logits of every token that cannot continue a valid text to -inf. End-of-generation
    /// tokens are allowed only once the value is complete (or, as a way out, when nothing else is).
    pub fn mask(&self, ix: &TokenIndex, logits: &mut [f32]) {
        let allowed = self.allowed(ix);
        for (i, l) in logits.iter_mut().enumerate() {
            if !allowed.get(i).copied().unwrap_or(false) {
                *l = f32::NEG_INFINITY;
            }
        }
    }

    /// Which tokens are allowed now, one flag per vocabulary entry.
    pub fn allowed(&self, ix: &TokenIndex) -> Vec<bool> {
        let mut allowed = vec![false; ix.vocab_size];
        let left = self.budget.map(|b| b.saturating_sub(self.accepted));
        let mut any = false;
        if left != Some(0) {
            let mut bufs: Vec<Vec<Stack>> = vec![Vec::new(); ix.max_len + 2];
            bufs[0] = self.state.clone();
            any = self.walk(ix, 0, 0, &mut bufs, left.map(|l| l as u32 - 1), &mut allowed);
        }
        let complete = self.is_complete();
        if complete || !any {
            for &e in &ix.eog {
                if let Some(a) = allowed.get_mut(e as usize) {
                    *a = true;
                }
            }
        }
        allowed
    }

    fn walk(&self, ix: &TokenIndex, node: usize, depth: usize, bufs: &mut [Vec<Stack>], left: Option<u32>, allowed: &mut [bool]) -> bool {
        let n = ix.nodes[node];
        let mut any = false;
        if depth > 0 && n.tok_len > 0 {
            let ok = match left {
                None => true,
                Some(l) => bufs[depth].iter().any(|s| self.grammar.dist(s) <= l),
            };
            if ok {
                any = true;
                for &t in &ix.tokens[n.tok_start as usize..(n.tok_start + n.tok_len) as usize] {
                    allowed[t as usize] = true;
                }
            }
        }
        for e in &ix.edges[n.edge_start as usize..(n.edge_start + n.edge_len) as usize] {
            let (cur, next) = bufs.split_at_mut(depth + 1);
            self.grammar.step(&cur[depth], e.0, &mut next[0]);
            if !next[0].is_empty() {
                any |= self.walk(ix, e.1 as usize, depth + 1, bufs, left, allowed);
            }
        }
        any
    }

    /// Advance with the chosen token. A token the constraint does not allow is an error (and
    /// leaves the state as it was).
    pub fn accept(&mut self, ix: &TokenIndex, id: u32) -> Result<()> {
        if ix.is_eog(id) {
            return if self.is_complete() {
                Ok(())
            } else {
                let need = self.bytes_to_complete();
                Err(HearthError::InvalidArgument(match self.budget {
                    // The mask leaves only the end token when no token keeps the value closable
                    // within the budget: the token limit is too small for the shortest value.
                    Some(b) if need as usize > b.saturating_sub(self.accepted) => format!(
                        "the output cannot be completed within the token limit: the shortest valid output needs {need} more bytes and {} tokens are left (raise maxTokens)",
                        b.saturating_sub(self.accepted)
                    ),
                    _ => format!("end-of-generation token {id} before the JSON value is complete"),
                }))
            };
        }
        let Some(piece) = ix.piece(id) else {
            return Err(HearthError::InvalidArgument(format!("token {id} is a control or empty token, not allowed in JSON output")));
        };
        let piece = piece.to_vec();
        self.accept_bytes(&piece)?;
        self.accepted += 1;
        Ok(())
    }

    /// Advance with raw bytes (what a token stands for). On error the state is unchanged. Too
    /// deep a nesting is an `InvalidArgument` error that says so.
    pub fn accept_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        let mut cur = self.state.clone();
        let mut next = Vec::new();
        for (i, &b) in bytes.iter().enumerate() {
            self.grammar.step(&cur, b, &mut next);
            if next.is_empty() {
                if b != b'{' && b != b'[' {
                    return Err(HearthError::InvalidArgument(format!(
                        "byte {:?} at offset {i} of {:?} is not valid JSON for the constraint here",
                        b as char,
                        String::from_utf8_lossy(bytes)
                    )));
                }
                let mut deep = self.grammar.clone();
                deep.max_depth = usize::MAX;
                let mut n2 = Vec::new();
                deep.step(&cur, b, &mut n2);
                return Err(HearthError::InvalidArgument(if n2.is_empty() {
                    format!("byte {:?} at offset {i} of {:?} is not valid JSON for the constraint here", b as char, String::from_utf8_lossy(bytes))
                } else {
                    format!("JSON nesting deeper than {} levels (max_depth)", self.grammar.max_depth)
                }));
            }
            std::mem::swap(&mut cur, &mut next);
        }
        self.state = cur;
        Ok(())
    }
}
