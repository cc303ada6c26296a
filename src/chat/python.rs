//! The Python behaviour Hugging Face chat templates rely on: `tojson` as `json.dumps(x,
//! ensure_ascii=False, indent=..)` (Python's ", " and ": " separators, no HTML escaping, unlike
//! minijinja's built-in), `strftime_now` on a caller-given date, and Python's string methods
//! (minijinja-contrib's pycompat) made to pay for what `str.format` widths allocate.

use super::Date;
use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};
use std::fmt::Write;

/// One step of the render's fuel pays for this many bytes (as in minijinja).
const BYTES_PER_STEP: usize = 64;

/// pycompat's methods (`.strip()`, `.items()`, ...). `str.format` pads to the widths its format
/// string names without charging the render's fuel, so `'{:>99999999999}'.format(x)` would
/// allocate them at once: charge the widths and precisions first, so that a hostile one runs out
/// of fuel instead.
pub fn unknown_method(state: &mut State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    if method == "format" {
        if let Some(s) = value.as_str() {
            state.consume_fuel(format_widths(s) / BYTES_PER_STEP as u64)?;
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// The sum of the numbers in the format specs (after ':' in `{...}`) of a `str.format` string.
fn format_widths(s: &str) -> u64 {
    let mut total = 0u64;
    let (mut in_field, mut in_spec, mut n) = (false, false, 0u64);
    for c in s.chars() {
        if let Some(d) = c.to_digit(10).filter(|_| in_spec) {
            n = n.saturating_mul(10).saturating_add(d as u64);
            continue;
        }
        total = total.saturating_add(std::mem::take(&mut n));
        match c {
            '{' => (in_field, in_spec) = (true, false),
            '}' => (in_field, in_spec) = (false, false),
            ':' if in_field => in_spec = true,
            _ => {}
        }
    }
    total.saturating_add(n)
}

/// How deep `tojson` follows nested lists and maps (real templates pass tool schemas a few levels
/// deep).
const MAX_JSON_DEPTH: usize = 128;

pub fn tojson(state: &State, value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let _: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let mut json = Json { state, out: String::new(), charged: 0, indent, sort: sort_keys.unwrap_or(false) };
    json.value(&value, 0)?;
    Ok(json.out)
}

/// `tojson`'s writer. A list may hold the same (paid for) string many times over, or be a lazy
/// `[x] * n`, so the output is charged against the render's fuel as it grows, not only once it is
/// returned: a hostile template runs out of fuel after one item too many.
struct Json<'a, 's, 'e> {
    state: &'a State<'s, 'e>,
    out: String,
    /// Bytes of `out` paid for.
    charged: usize,
    indent: Option<usize>,
    sort: bool,
}

impl Json<'_, '_, '_> {
    /// Charge the output written since the last call (whole steps; the rest is charged later).
    fn pay(&mut self) -> Result<(), Error> {
        let steps = (self.out.len() - self.charged) / BYTES_PER_STEP;
        self.charged += steps * BYTES_PER_STEP;
        self.state.consume_fuel(steps as u64)
    }

    fn newline(&mut self, depth: usize) -> Result<(), Error> {
        if let Some(n) = self.indent {
            // Charged before it is written: `indent` is a number the template picks.
            let width = n.saturating_mul(depth);
            self.state.consume_fuel((width / BYTES_PER_STEP) as u64)?;
            self.out.push('\n');
            self.out.push_str(&" ".repeat(width));
        }
        Ok(())
    }

    fn value(&mut self, v: &Value, depth: usize) -> Result<(), Error> {
        // A template can nest lists as deep as its fuel allows; this recursion must not run out
        // of stack (Python's json.dumps stops at its recursion limit too).
        if depth > MAX_JSON_DEPTH {
            return Err(Error::new(ErrorKind::InvalidOperation, format!("tojson: the value is nested deeper than {MAX_JSON_DEPTH} levels")));
        }
        let item_sep = if self.indent.is_some() { "," } else { ", " };
        let out = &mut self.out;
        match v.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if v.is_true() { "true" } else { "false" }),
            ValueKind::Number => match v.as_i64() {
                Some(i) if v.is_integer() => write!(out, "{i}").unwrap(),
                _ => {
                    let f = f64::try_from(v.clone()).map_err(|_| Error::new(ErrorKind::InvalidOperation, "not a number"))?;
                    // Python's repr keeps a ".0" on whole floats.
                    if f.fract() == 0.0 && f.is_finite() {
                        write!(out, "{f:.1}").unwrap()
                    } else {
                        write!(out, "{f}").unwrap()
                    }
                }
            },
            ValueKind::String => {
                // Paid for before it is copied: the same string may be written many times.
                let s = v.as_str().unwrap_or_default();
                self.pay()?;
                self.state.consume_fuel((s.len() / BYTES_PER_STEP) as u64)?;
                self.charged += s.len() / BYTES_PER_STEP * BYTES_PER_STEP;
                write_str(&mut self.out, s);
            }
            ValueKind::Seq | ValueKind::Iterable => {
                out.push('[');
                let mut empty = true;
                for (i, item) in v.try_iter()?.enumerate() {
                    // A step an item, as for an instruction: the list may be a lazy `[1] * 10**8`.
                    self.state.consume_fuel(1)?;
                    if i > 0 {
                        self.out.push_str(item_sep);
                    }
                    self.newline(depth + 1)?;
                    self.value(&item, depth + 1)?;
                    empty = false;
                }
                if !empty {
                    self.newline(depth)?;
                }
                self.out.push(']');
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = v.try_iter()?.collect();
                if self.sort {
                    keys.sort();
                }
                out.push('{');
                for (i, k) in keys.iter().enumerate() {
                    if i > 0 {
                        self.out.push_str(item_sep);
                    }
                    self.newline(depth + 1)?;
                    write_str(&mut self.out, &k.to_string());
                    self.out.push_str(": ");
                    self.value(&v.get_item(k)?, depth + 1)?;
                }
                if !keys.is_empty() {
                    self.newline(depth)?;
                }
                self.out.push('}');
            }
            _ => write_str(out, &v.to_string()),
        }
        self.pay()
    }
}

pub(super) fn write_str(out: &mut String, s: &str) {
    out.push('"');
    // Copy the runs between the characters that need escaping (all ASCII) whole.
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escaped = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            b if b < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escaped.is_empty() {
            write!(out, "\\u{b:04x}").unwrap();
        } else {
            out.push_str(escaped);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const DAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

/// Day of the week, 0 = Sunday (Sakamoto's method).
fn weekday(d: Date) -> usize {
    const T: [i32; 12] = [0, 3, 2, 5, 0, 3, 5, 1, 4, 6, 2, 4];
    let y = if d.month < 3 { d.year - 1 } else { d.year };
    ((y + y / 4 - y / 100 + y / 400 + T[d.month as usize - 1] + d.day as i32).rem_euclid(7)) as usize
}

/// strftime for the directives templates use; the time of day is noon.
pub fn strftime(fmt: &str, d: Date) -> String {
    let month = MONTHS[(d.month as usize).clamp(1, 12) - 1];
    let day = DAYS[weekday(d)];
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => write!(out, "{:02}", d.day).unwrap(),
            Some('e') => write!(out, "{:2}", d.day).unwrap(),
            Some('m') => write!(out, "{:02}", d.month).unwrap(),
            Some('Y') => write!(out, "{}", d.year).unwrap(),
            Some('y') => write!(out, "{:02}", d.year.rem_euclid(100)).unwrap(),
            Some('b') => out.push_str(&month[..3]),
            Some('B') => out.push_str(month),
            Some('a') => out.push_str(&day[..3]),
            Some('A') => out.push_str(day),
            Some('H') => out.push_str("12"),
            Some('M') | Some('S') => out.push_str("00"),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// One line: the message plus, where minijinja has it, the template line.
pub fn describe(e: &Error) -> String {
    match (e.detail(), e.line()) {
        (Some(d), Some(l)) => format!("{d} (line {l})"),
        (Some(d), None) => d.to_string(),
        (None, Some(l)) => format!("{} (line {l})", e.kind()),
        (None, None) => e.kind().to_string(),
    }
}
