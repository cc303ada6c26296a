//! JSON schema (the subset OpenAI's structured outputs use) compiled to grammar nodes.

use super::automaton::{Node, NodeId, Prop};
use crate::error::{HearthError, Result};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Keywords that only annotate: they constrain nothing, so ignoring them is exact.
const ANNOTATIONS: &[&str] =
    &["title", "description", "default", "examples", "$comment", "$schema", "$id", "deprecated", "readOnly", "writeOnly"];

fn unsupported(kw: &str, why: &str) -> HearthError {
    HearthError::InvalidArgument(format!("JSON schema keyword '{kw}' is not supported{why}"))
}

fn bad(msg: impl Into<String>) -> HearthError {
    HearthError::InvalidArgument(format!("invalid JSON schema: {}", msg.into()))
}

pub(crate) struct Compiler<'a> {
    root: &'a Value,
    pub nodes: Vec<Node>,
    /// `$ref` targets compiled so far, by (which root they resolve in, the reference).
    refs: HashMap<(usize, String), NodeId>,
    /// Which root `root` is (`compile_rooted` moves to another).
    root_no: usize,
    /// Roots numbered so far.
    roots: usize,
    any: Option<NodeId>,
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64(),
        "boolean" => v.is_boolean(),
        "null" => v.is_null(),
        _ => false,
    }
}

fn get_u32(obj: &Map<String, Value>, kw: &str) -> Result<Option<u32>> {
    match obj.get(kw) {
        None => Ok(None),
        Some(v) => v
            .as_u64()
            .map(|n| Some(n.min(u32::MAX as u64 - 1) as u32))
            .ok_or_else(|| bad(format!("'{kw}' must be a non-negative integer"))),
    }
}

impl<'a> Compiler<'a> {
    pub fn new(root: &'a Value) -> Self {
        Self { root, nodes: Vec::new(), refs: HashMap::new(), root_no: 0, roots: 1, any: None }
    }

    /// Compile `schema` as a document of its own: its `$ref`s resolve in it (a tool's parameter
    /// schema, one of several in a grammar).
    pub fn compile_rooted(&mut self, schema: &'a Value) -> Result<NodeId> {
        let saved = (self.root, self.root_no);
        self.root = schema;
        self.root_no = self.roots;
        self.roots += 1;
        let r = self.compile(schema);
        (self.root, self.root_no) = saved;
        r
    }

    pub fn push_node(&mut self, n: Node) -> NodeId {
        self.push(n)
    }

    fn push(&mut self, n: Node) -> NodeId {
        self.nodes.push(n);
        (self.nodes.len() - 1) as NodeId
    }

    /// Any JSON value.
    pub fn any(&mut self) -> NodeId {
        if let Some(a) = self.any {
            return a;
        }
        let any = self.push(Node::AnyOf(Vec::new()));
        self.any = Some(any);
        let obj = self.push(Node::Object { props: Vec::new(), required: 0, additional: Some(any), ordered: false });
        let arr = self.push(Node::Array { items: any, min: 0, max: u32::MAX });
        let s = self.push(Node::String { min: 0, max: u32::MAX });
        let num = self.push(Node::Number { integer: false });
        let lit = self.push(Node::Lit(vec![b"true".to_vec(), b"false".to_vec(), b"null".to_vec()]));
        self.nodes[any as usize] = Node::AnyOf(vec![obj, arr, s, num, lit]);
        any
    }

    /// A JSON object with any members (JSON mode's top level).
    pub fn any_object(&mut self) -> NodeId {
        let any = self.any();
        self.push(Node::Object { props: Vec::new(), required: 0, additional: Some(any), ordered: false })
    }

    pub fn compile(&mut self, s: &Value) -> Result<NodeId> {
        let obj = match s {
            Value::Bool(true) => return Ok(self.any()),
            Value::Bool(false) => return Err(bad("the schema 'false' admits no value")),
            Value::Object(o) => o,
            _ => return Err(bad(format!("a schema must be an object or a boolean, got {s}"))),
        };
        for k in obj.keys() {
            let known = ANNOTATIONS.contains(&k.as_str())
                || matches!(
                    k.as_str(),
                    "type"
                        | "properties"
                        | "required"
                        | "additionalProperties"
                        | "items"
                        | "minItems"
                        | "maxItems"
                        | "enum"
                        | "const"
                        | "anyOf"
                        | "oneOf"
                        | "$ref"
                        | "minLength"
                        | "maxLength"
                        | "$defs"
                        | "definitions"
                );
            if !known {
                return Err(unsupported(k, ""));
            }
        }
        let constraining: Vec<&String> = obj
            .keys()
            .filter(|k| !ANNOTATIONS.contains(&k.as_str()) && *k != "$defs" && *k != "definitions")
            .collect();

        if let Some(r) = obj.get("$ref") {
            if constraining.len() > 1 {
                return Err(unsupported("$ref", " together with other constraining keywords"));
            }
            let r = r.as_str().ok_or_else(|| bad("'$ref' must be a string"))?;
            return self.reference(r);
        }
        for kw in ["anyOf", "oneOf"] {
            if let Some(alts) = obj.get(kw) {
                if constraining.len() > 1 {
                    return Err(unsupported(kw, " together with other constraining keywords"));
                }
                let alts = alts.as_array().ok_or_else(|| bad(format!("'{kw}' must be an array")))?;
                if alts.is_empty() {
                    return Err(bad(format!("'{kw}' is empty")));
                }
                let ids = alts.iter().map(|a| self.compile(a)).collect::<Result<Vec<_>>>()?;
                return Ok(self.push(Node::AnyOf(ids)));
            }
        }

        let types: Option<Vec<String>> = match obj.get("type") {
            None => None,
            Some(Value::String(t)) => Some(vec![t.clone()]),
            Some(Value::Array(ts)) => Some(
                ts.iter()
                    .map(|t| t.as_str().map(str::to_string).ok_or_else(|| bad("'type' entries must be strings")))
                    .collect::<Result<_>>()?,
            ),
            Some(_) => return Err(bad("'type' must be a string or an array of strings")),
        };
        if let Some(ts) = &types {
            for t in ts {
                if !matches!(t.as_str(), "object" | "array" | "string" | "number" | "integer" | "boolean" | "null") {
                    return Err(bad(format!("unknown type '{t}'")));
                }
            }
            if ts.is_empty() {
                return Err(bad("'type' is an empty array"));
            }
        }

        let literals: Option<Vec<Value>> = match (obj.get("enum"), obj.get("const")) {
            (Some(_), Some(_)) => return Err(unsupported("const", " together with 'enum'")),
            (Some(Value::Array(vs)), None) => Some(vs.clone()),
            (Some(_), None) => return Err(bad("'enum' must be an array")),
            (None, Some(c)) => Some(vec![c.clone()]),
            (None, None) => None,
        };
        if let Some(vals) = literals {
            let vals: Vec<Value> = vals
                .into_iter()
                .filter(|v| types.as_ref().is_none_or(|ts| ts.iter().any(|t| type_matches(t, v))))
                .collect();
            if vals.is_empty() {
                return Err(bad("'enum'/'const' leaves no value of the schema's type"));
            }
            if vals.len() > 64 {
                return Err(unsupported("enum", " with more than 64 values"));
            }
            let mut alts: Vec<Vec<u8>> = vals.iter().map(|v| serde_json::to_vec(v).unwrap()).collect();
            alts.dedup();
            return Ok(self.push(Node::Lit(alts)));
        }

        let types = match types {
            Some(ts) => ts,
            None if obj.contains_key("properties") || obj.contains_key("required") || obj.contains_key("additionalProperties") => {
                vec!["object".into()]
            }
            None if obj.contains_key("items") => vec!["array".into()],
            None if obj.contains_key("minLength") || obj.contains_key("maxLength") => vec!["string".into()],
            None => return Ok(self.any()),
        };
        let mut ids = Vec::new();
        for t in &types {
            ids.push(self.typed(t, obj)?);
        }
        Ok(if ids.len() == 1 { ids[0] } else { self.push(Node::AnyOf(ids)) })
    }

    fn typed(&mut self, t: &str, obj: &Map<String, Value>) -> Result<NodeId> {
        match t {
            "object" => {
                let props_v = match obj.get("properties") {
                    None => Map::new(),
                    Some(Value::Object(p)) => p.clone(),
                    Some(_) => return Err(bad("'properties' must be an object")),
                };
                if props_v.len() > 64 {
                    return Err(unsupported("properties", " with more than 64 properties"));
                }
                let mut props = Vec::new();
                for (name, sub) in &props_v {
                    let node = self.compile(sub)?;
                    let mut key = serde_json::to_vec(&Value::String(name.clone())).unwrap();
                    key.remove(0);
                    props.push(Prop { key, node });
                }
                let mut required = 0u64;
                if let Some(req) = obj.get("required") {
                    let req = req.as_array().ok_or_else(|| bad("'required' must be an array"))?;
                    for r in req {
                        let r = r.as_str().ok_or_else(|| bad("'required' entries must be strings"))?;
                        let i = props_v
                            .keys()
                            .position(|k| k == r)
                            .ok_or_else(|| unsupported("required", &format!(" for '{r}', which is not in 'properties'")))?;
                        required |= 1 << i;
                    }
                }
                let additional = match obj.get("additionalProperties") {
                    None | Some(Value::Bool(false)) => None,
                    Some(v) => Some(self.compile(v)?),
                };
                if additional.is_some() && !props.is_empty() {
                    return Err(unsupported("additionalProperties", " (allowed) together with 'properties'"));
                }
                Ok(self.push(Node::Object { props, required, additional, ordered: false }))
            }
            "array" => {
                let items = match obj.get("items") {
                    None => self.any(),
                    Some(Value::Array(_)) => return Err(unsupported("items", " as an array (tuple validation)")),
                    Some(v) => self.compile(v)?,
                };
                let min = get_u32(obj, "minItems")?.unwrap_or(0);
                let max = get_u32(obj, "maxItems")?.unwrap_or(u32::MAX);
                if min > max {
                    return Err(bad("minItems > maxItems"));
                }
                Ok(self.push(Node::Array { items, min, max }))
            }
            "string" => {
                let min = get_u32(obj, "minLength")?.unwrap_or(0);
                let max = get_u32(obj, "maxLength")?.unwrap_or(u32::MAX);
                if min > max {
                    return Err(bad("minLength > maxLength"));
                }
                Ok(self.push(Node::String { min, max }))
            }
            "number" => Ok(self.push(Node::Number { integer: false })),
            "integer" => Ok(self.push(Node::Number { integer: true })),
            "boolean" => Ok(self.push(Node::Lit(vec![b"true".to_vec(), b"false".to_vec()]))),
            "null" => Ok(self.push(Node::Lit(vec![b"null".to_vec()]))),
            _ => unreachable!(),
        }
    }

    fn reference(&mut self, r: &str) -> Result<NodeId> {
        if let Some(&id) = self.refs.get(&(self.root_no, r.to_string())) {
            return Ok(id);
        }
        let target = if r == "#" {
            self.root
        } else {
            let (dir, name) = r
                .strip_prefix("#/$defs/")
                .map(|n| ("$defs", n))
                .or_else(|| r.strip_prefix("#/definitions/").map(|n| ("definitions", n)))
                .ok_or_else(|| unsupported("$ref", &format!(" to '{r}' (only '#', '#/$defs/..' and '#/definitions/..')")))?;
            let name = name.replace("~1", "/").replace("~0", "~");
            self.root
                .get(dir)
                .and_then(|d| d.get(&name))
                .ok_or_else(|| bad(format!("'$ref' target '{r}' does not exist")))?
        };
        let id = self.push(Node::AnyOf(Vec::new()));
        self.refs.insert((self.root_no, r.to_string()), id);
        let t = self.compile(target)?;
        self.nodes[id as usize] = Node::AnyOf(vec![t]);
        Ok(id)
    }
}
