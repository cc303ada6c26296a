//! JSON that keeps its keys in the order they were written. Chat templates print tool definitions
//! and call arguments with `tojson`, and Hugging Face (Python dicts) keeps the caller's order;
//! `serde_json::Value` sorts keys, so the tools and arguments a request carries are read into this
//! instead and handed to the template as ordered minijinja maps.

use minijinja::Value;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt::Write;

#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(serde_json::Number),
    Str(String),
    Arr(Vec<Json>),
    /// Members in the order written (a repeated key keeps its last value, in its first place).
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn parse(text: &str) -> serde_json::Result<Json> {
        serde_json::from_str(text)
    }

    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The same value as a minijinja value, maps in order.
    pub fn to_value(&self) -> Value {
        match self {
            Json::Null => Value::from(()),
            Json::Bool(b) => Value::from(*b),
            Json::Num(n) => {
                if let Some(i) = n.as_i64() {
                    Value::from(i)
                } else if let Some(u) = n.as_u64() {
                    Value::from(u)
                } else {
                    Value::from(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            Json::Str(s) => Value::from(s.as_str()),
            Json::Arr(items) => Value::from(items.iter().map(Json::to_value).collect::<Vec<_>>()),
            Json::Obj(members) => Value::from_pairs(members.iter().map(|(k, v)| (k.as_str(), v.to_value()))),
        }
    }

    /// The same value as serde_json's (for the grammar, which does not care about order).
    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Json::Null => serde_json::Value::Null,
            Json::Bool(b) => serde_json::Value::Bool(*b),
            Json::Num(n) => serde_json::Value::Number(n.clone()),
            Json::Str(s) => serde_json::Value::String(s.clone()),
            Json::Arr(items) => serde_json::Value::Array(items.iter().map(Json::to_serde).collect()),
            Json::Obj(members) => serde_json::Value::Object(members.iter().map(|(k, v)| (k.clone(), v.to_serde())).collect()),
        }
    }

    /// As Python's `json.dumps(x, ensure_ascii=False)` writes it (", " and ": " separators), which
    /// is what a template's `tojson` prints.
    pub fn dumps(&self) -> String {
        let mut out = String::new();
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
                (Some(i), _, _) => write!(out, "{i}").unwrap(),
                (_, Some(u), _) => write!(out, "{u}").unwrap(),
                (_, _, Some(f)) if f.fract() == 0.0 && f.is_finite() && f.abs() < 1e16 => write!(out, "{f:.1}").unwrap(),
                (_, _, Some(f)) => write!(out, "{f}").unwrap(),
                _ => out.push_str(&n.to_string()),
            },
            Json::Str(s) => super::python::write_str(out, s),
            Json::Arr(items) => {
                out.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    v.write(out);
                }
                out.push(']');
            }
            Json::Obj(members) => {
                out.push('{');
                for (i, (k, v)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    super::python::write_str(out, k);
                    out.push_str(": ");
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Json;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Json, D::Error> {
                Json::deserialize(d)
            }
            fn visit_bool<E>(self, b: bool) -> Result<Json, E> {
                Ok(Json::Bool(b))
            }
            fn visit_i64<E>(self, i: i64) -> Result<Json, E> {
                Ok(Json::Num(i.into()))
            }
            fn visit_u64<E>(self, u: u64) -> Result<Json, E> {
                Ok(Json::Num(u.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Json, E> {
                serde_json::Number::from_f64(f).map(Json::Num).ok_or_else(|| E::custom("a number that is not finite"))
            }
            fn visit_str<E>(self, s: &str) -> Result<Json, E> {
                Ok(Json::Str(s.to_string()))
            }
            fn visit_string<E>(self, s: String) -> Result<Json, E> {
                Ok(Json::Str(s))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(v) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Json::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut members: Vec<(String, Json)> = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Json>()? {
                    match members.iter_mut().find(|(key, _)| *key == k) {
                        Some(m) => m.1 = v,
                        None => members.push((k, v)),
                    }
                }
                Ok(Json::Obj(members))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_key_order_and_prints_like_python() {
        let j = Json::parse(r#"{"z": 1, "a": [true, null, 2.5, 3.0, "é\"\n"], "m": {"y": {}, "b": []}}"#).unwrap();
        assert_eq!(j.dumps(), r#"{"z": 1, "a": [true, null, 2.5, 3.0, "é\"\n"], "m": {"y": {}, "b": []}}"#);
        let keys: Vec<String> = j.to_value().try_iter().unwrap().map(|k| k.to_string()).collect();
        assert_eq!(keys, ["z", "a", "m"]);
        assert_eq!(j.to_serde()["m"]["y"], serde_json::json!({}));
    }
}
