//! A byte-level pushdown automaton for JSON, driven by a compiled grammar (`Node`s).
//!
//! The state is a small set of stacks (nondeterminism comes only from `anyOf` alternatives and
//! literals such as number enums that may end or go on); each stack is a `Vec<Frame>` of `Copy`
//! frames, so cloning one is a memcpy.

pub(crate) type NodeId = u32;

/// Large enough to mean "no finite value", small enough that sums of a few never overflow.
pub(crate) const INF: u32 = u32::MAX / 8;

/// Digits allowed in a number's integer part (any 18-digit integer fits an i64), fraction and exponent.
pub(crate) const MAX_INT_DIGITS: u8 = 18;
pub(crate) const MAX_FRAC_DIGITS: u8 = 24;
pub(crate) const MAX_EXP_DIGITS: u8 = 2;

#[derive(Clone, Debug)]
pub(crate) struct Prop {
    /// The property name JSON-encoded, without the opening quote, with the closing one.
    pub key: Vec<u8>,
    pub node: NodeId,
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// `ordered`: the properties come in the order of `props`, all of them (a function call's
    /// name before its arguments, so that a stream can say which function it calls first).
    Object { props: Vec<Prop>, required: u64, additional: Option<NodeId>, ordered: bool },
    Array { items: NodeId, min: u32, max: u32 },
    String { min: u32, max: u32 },
    Number { integer: bool },
    /// One of these exact byte strings (true/false/null, enum, const).
    Lit(Vec<Vec<u8>>),
    AnyOf(Vec<NodeId>),
    /// A Llama Guard verdict, not JSON: `safe`, or `unsafe\n` and one or more of `codes` (each
    /// at most once) separated by commas. At most 64 codes.
    Verdict { codes: Vec<Vec<u8>> },
}

/// The two ways a verdict begins.
pub(crate) const VERDICT_HEADS: [&[u8]; 2] = [b"safe", b"unsafe\n"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ObjSt {
    Open,
    Comma,
    InKey,
    AfterKey,
    AfterVal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArrSt {
    Open,
    AfterVal,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NumSt {
    Minus,
    Zero,
    Int,
    Dot,
    Frac,
    Exp,
    ExpSign,
    ExpDig,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Esc {
    No,
    Bs,
    Hex(u8, u16),
    WantBs,
    WantU,
    LowHex(u8, u16),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Root { done: bool },
    Value(NodeId),
    Obj { node: NodeId, st: ObjSt, seen: u64, cur: NodeId },
    Arr { node: NodeId, st: ArrSt, count: u32 },
    Str { node: NodeId, count: u32, esc: Esc, need: u8, lo: u8, hi: u8 },
    Num { integer: bool, st: NumSt, digits: u8 },
    Lit { node: NodeId, alive: u64, pos: u16 },
    Key { node: NodeId, alive: u64, pos: u16 },
    /// In a verdict: `codes` false while matching a head (`alive` over `VERDICT_HEADS`), true
    /// while matching a code (`alive` over the node's codes, `seen` those already written).
    Verdict { node: NodeId, codes: bool, alive: u64, seen: u64, pos: u16 },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Stack {
    pub frames: Vec<Frame>,
    pub ws: u8,
}

#[derive(Clone)]
pub(crate) struct Grammar {
    pub nodes: Vec<Node>,
    pub root: NodeId,
    /// Minimal number of bytes of a value of each node.
    pub minlen: Vec<u32>,
    /// The string node free object keys are read with.
    pub key_string: NodeId,
    pub max_depth: usize,
    pub max_ws: u8,
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

fn hex(b: u8) -> Option<u16> {
    (b as char).to_digit(16).map(|d| d as u16)
}

fn accept(mut s: Stack, out: &mut Vec<Stack>) {
    s.ws = 0;
    out.push(s);
}

/// Pop the finished top frame and tell its parent.
fn pop_finish(s: &mut Stack) {
    s.frames.pop();
    match s.frames.last_mut() {
        Some(Frame::Root { done }) => *done = true,
        Some(Frame::Obj { st, .. }) if *st == ObjSt::InKey => *st = ObjSt::AfterKey,
        _ => {}
    }
}

fn num_can_end(st: NumSt) -> bool {
    matches!(st, NumSt::Zero | NumSt::Int | NumSt::Frac | NumSt::ExpDig)
}

impl Grammar {
    /// Compute `minlen` by fixpoint iteration (recursive `$ref`s converge from above).
    pub fn finish(&mut self) {
        self.minlen = vec![INF; self.nodes.len()];
        loop {
            let mut changed = false;
            for i in 0..self.nodes.len() {
                let v = self.node_minlen(i as NodeId);
                if v < self.minlen[i] {
                    self.minlen[i] = v;
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
    }

    fn node_minlen(&self, n: NodeId) -> u32 {
        let m = |x: NodeId| self.minlen[x as usize];
        let v = match &self.nodes[n as usize] {
            Node::Object { props, required, .. } => {
                let mut sum = 2u32;
                let mut k = 0;
                for (i, p) in props.iter().enumerate() {
                    if required >> i & 1 == 1 {
                        sum = sum.saturating_add(p.key.len() as u32 + 2).saturating_add(m(p.node));
                        k += 1;
                    }
                }
                sum + if k > 0 { k - 1 } else { 0 }
            }
            Node::Array { items, min, .. } => {
                if *min == 0 {
                    2
                } else {
                    2u32.saturating_add(min.saturating_mul(m(*items).saturating_add(1))) - 1
                }
            }
            Node::String { min, .. } => 2u32.saturating_add(*min),
            Node::Number { .. } => 1,
            Node::Lit(alts) => alts.iter().map(|a| a.len() as u32).min().unwrap_or(INF),
            Node::AnyOf(alts) => alts.iter().map(|&a| m(a)).min().unwrap_or(INF),
            Node::Verdict { .. } => VERDICT_HEADS[0].len() as u32,
        };
        v.min(INF)
    }

    /// `anyOf` alternatives are expanded without reading a byte, so they must not form a cycle.
    pub fn check_alternatives_acyclic(&self) -> crate::Result<()> {
        // 0 unvisited, 1 on the path, 2 done
        fn visit(g: &Grammar, n: NodeId, mark: &mut [u8]) -> bool {
            match mark[n as usize] {
                1 => return false,
                2 => return true,
                _ => {}
            }
            mark[n as usize] = 1;
            if let Node::AnyOf(alts) = &g.nodes[n as usize] {
                for &a in alts {
                    if !visit(g, a, mark) {
                        return false;
                    }
                }
            }
            mark[n as usize] = 2;
            true
        }
        let mut mark = vec![0u8; self.nodes.len()];
        for n in 0..self.nodes.len() {
            if !visit(self, n as NodeId, &mut mark) {
                return Err(crate::HearthError::InvalidArgument(
                    "invalid JSON schema: a '$ref'/'anyOf' refers to itself without any structure in between".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn initial(&self) -> Vec<Stack> {
        vec![Stack { frames: vec![Frame::Root { done: false }, Frame::Value(self.root)], ws: 0 }]
    }

    /// Feed one byte to every stack; the successors go to `out` (deduplicated).
    pub fn step(&self, from: &[Stack], b: u8, out: &mut Vec<Stack>) {
        // Fast path (most of a mask walk): a plain ASCII character inside a string, reusing `out`'s
        // allocation.
        if let [one] = from {
            if let Some(&Frame::Str { node, count, esc: Esc::No, need: 0, .. }) = one.frames.last() {
                let max = match self.nodes[node as usize] {
                    Node::String { max, .. } => max,
                    _ => u32::MAX,
                };
                if (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\' && count < max {
                    out.truncate(1);
                    match out.first_mut() {
                        Some(o) => o.clone_from(one),
                        None => out.push(one.clone()),
                    }
                    out[0].ws = 0;
                    if let Some(Frame::Str { count, .. }) = out[0].frames.last_mut() {
                        *count += 1;
                    }
                    return;
                }
            }
        }
        out.clear();
        for s in from {
            self.feed(s.clone(), b, out);
        }
        if out.len() > 1 {
            let mut i = 1;
            while i < out.len() {
                if out[..i].contains(&out[i]) {
                    out.swap_remove(i);
                } else {
                    i += 1;
                }
            }
        }
    }

    fn feed(&self, mut s: Stack, b: u8, out: &mut Vec<Stack>) {
        loop {
            let Some(&top) = s.frames.last() else { return };
            let depth = s.frames.len();
            match top {
                Frame::Root { .. } => return,
                Frame::Value(n) => {
                    if is_ws(b) {
                        if s.ws < self.max_ws {
                            s.ws += 1;
                            out.push(s);
                        }
                        return;
                    }
                    let new = match &self.nodes[n as usize] {
                        Node::AnyOf(alts) => {
                            for &a in alts {
                                let mut c = s.clone();
                                *c.frames.last_mut().unwrap() = Frame::Value(a);
                                self.feed(c, b, out);
                            }
                            return;
                        }
                        Node::Object { .. } if b == b'{' && depth - 1 <= self.max_depth => {
                            Frame::Obj { node: n, st: ObjSt::Open, seen: 0, cur: 0 }
                        }
                        Node::Array { .. } if b == b'[' && depth - 1 <= self.max_depth => {
                            Frame::Arr { node: n, st: ArrSt::Open, count: 0 }
                        }
                        Node::String { .. } if b == b'"' => {
                            Frame::Str { node: n, count: 0, esc: Esc::No, need: 0, lo: 0, hi: 0 }
                        }
                        Node::Number { integer } => {
                            let st = match b {
                                b'-' => NumSt::Minus,
                                b'0' => NumSt::Zero,
                                b'1'..=b'9' => NumSt::Int,
                                _ => return,
                            };
                            Frame::Num { integer: *integer, st, digits: (st != NumSt::Minus) as u8 }
                        }
                        Node::Lit(alts) => {
                            let mut alive = 0u64;
                            for (i, a) in alts.iter().enumerate() {
                                if a.first() == Some(&b) {
                                    alive |= 1 << i;
                                }
                            }
                            if alive == 0 {
                                return;
                            }
                            *s.frames.last_mut().unwrap() = Frame::Lit { node: n, alive, pos: 1 };
                            self.lit_maybe_done(&mut s);
                            return accept(s, out);
                        }
                        Node::Verdict { .. } => {
                            // The frame reads the first byte itself.
                            *s.frames.last_mut().unwrap() = Frame::Verdict { node: n, codes: false, alive: 0b11, seen: 0, pos: 0 };
                            continue;
                        }
                        _ => return,
                    };
                    *s.frames.last_mut().unwrap() = new;
                    return accept(s, out);
                }
                Frame::Obj { node, st, seen, cur } => {
                    let Node::Object { props, required, additional, ordered } = &self.nodes[node as usize] else { return };
                    if is_ws(b) && st != ObjSt::InKey {
                        if s.ws < self.max_ws {
                            s.ws += 1;
                            out.push(s);
                        }
                        return;
                    }
                    let all = if props.len() == 64 { u64::MAX } else { (1u64 << props.len()) - 1 };
                    let set = |s: &mut Stack, f: Frame| *s.frames.last_mut().unwrap() = f;
                    match (st, b) {
                        (ObjSt::Open | ObjSt::Comma, b'"') => {
                            if props.is_empty() {
                                let Some(add) = additional else { return };
                                set(&mut s, Frame::Obj { node, st: ObjSt::InKey, seen, cur: *add });
                                s.frames.push(Frame::Str { node: self.key_string, count: 0, esc: Esc::No, need: 0, lo: 0, hi: 0 });
                            } else {
                                let mut alive = all & !seen;
                                if *ordered {
                                    alive &= alive.wrapping_neg(); // the first one not seen yet
                                }
                                if alive == 0 {
                                    return;
                                }
                                set(&mut s, Frame::Obj { node, st: ObjSt::InKey, seen, cur });
                                s.frames.push(Frame::Key { node, alive, pos: 0 });
                            }
                            return accept(s, out);
                        }
                        (ObjSt::Open | ObjSt::AfterVal, b'}') => {
                            if required & !seen != 0 {
                                return;
                            }
                            pop_finish(&mut s);
                            return accept(s, out);
                        }
                        (ObjSt::AfterVal, b',') => {
                            if additional.is_none() && all & !seen == 0 {
                                return;
                            }
                            set(&mut s, Frame::Obj { node, st: ObjSt::Comma, seen, cur });
                            return accept(s, out);
                        }
                        (ObjSt::AfterKey, b':') => {
                            set(&mut s, Frame::Obj { node, st: ObjSt::AfterVal, seen, cur });
                            s.frames.push(Frame::Value(cur));
                            return accept(s, out);
                        }
                        _ => return,
                    }
                }
                Frame::Key { node, alive, pos } => {
                    let Node::Object { props, .. } = &self.nodes[node as usize] else { return };
                    let p = pos as usize;
                    let mut next = 0u64;
                    let mut done = None;
                    for (i, pr) in props.iter().enumerate() {
                        if alive >> i & 1 == 1 && pr.key.get(p) == Some(&b) {
                            next |= 1 << i;
                            if pr.key.len() == p + 1 {
                                done = Some(i);
                            }
                        }
                    }
                    if next == 0 {
                        return;
                    }
                    if let Some(i) = done {
                        s.frames.pop();
                        if let Some(Frame::Obj { st, seen, cur, .. }) = s.frames.last_mut() {
                            *st = ObjSt::AfterKey;
                            *seen |= 1 << i;
                            *cur = props[i].node;
                        }
                    } else {
                        *s.frames.last_mut().unwrap() = Frame::Key { node, alive: next, pos: pos + 1 };
                    }
                    return accept(s, out);
                }
                Frame::Arr { node, st, count } => {
                    let Node::Array { items, min, max } = self.nodes[node as usize] else { return };
                    if is_ws(b) {
                        if s.ws < self.max_ws {
                            s.ws += 1;
                            out.push(s);
                        }
                        return;
                    }
                    match (st, b) {
                        (ArrSt::Open, b']') | (ArrSt::AfterVal, b']') => {
                            if count < min {
                                return;
                            }
                            pop_finish(&mut s);
                            return accept(s, out);
                        }
                        (ArrSt::AfterVal, b',') => {
                            if count >= max {
                                return;
                            }
                            *s.frames.last_mut().unwrap() = Frame::Arr { node, st: ArrSt::AfterVal, count: count + 1 };
                            s.frames.push(Frame::Value(items));
                            return accept(s, out);
                        }
                        (ArrSt::Open, _) => {
                            if max == 0 {
                                return;
                            }
                            *s.frames.last_mut().unwrap() = Frame::Arr { node, st: ArrSt::AfterVal, count: 1 };
                            s.frames.push(Frame::Value(items));
                            continue; // the byte starts the first item
                        }
                        _ => return,
                    }
                }
                Frame::Str { node, count, esc, need, lo, hi } => {
                    let (min, max) = match self.nodes[node as usize] {
                        Node::String { min, max } => (min, max),
                        _ => (0, u32::MAX),
                    };
                    let mut f = Frame::Str { node, count, esc, need, lo, hi };
                    let Frame::Str { count: ref mut c, esc: ref mut e, need: ref mut nd, lo: ref mut l, hi: ref mut h, .. } = f
                    else {
                        unreachable!()
                    };
                    if need > 0 {
                        if b < lo || b > hi {
                            return;
                        }
                        *nd -= 1;
                        *l = 0x80;
                        *h = 0xbf;
                    } else {
                        match esc {
                            Esc::Bs => match b {
                                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                                    *e = Esc::No;
                                    *c += 1;
                                }
                                b'u' => *e = Esc::Hex(0, 0),
                                _ => return,
                            },
                            Esc::Hex(n, v) | Esc::LowHex(n, v) => {
                                let Some(d) = hex(b) else { return };
                                let v = v << 4 | d;
                                let low = matches!(esc, Esc::LowHex(..));
                                if n < 3 {
                                    *e = if low { Esc::LowHex(n + 1, v) } else { Esc::Hex(n + 1, v) };
                                } else if low {
                                    if !(0xdc00..=0xdfff).contains(&v) {
                                        return;
                                    }
                                    *e = Esc::No;
                                    *c += 1;
                                } else if (0xd800..=0xdbff).contains(&v) {
                                    *e = Esc::WantBs;
                                } else if (0xdc00..=0xdfff).contains(&v) {
                                    return;
                                } else {
                                    *e = Esc::No;
                                    *c += 1;
                                }
                            }
                            Esc::WantBs if b == b'\\' => *e = Esc::WantU,
                            Esc::WantU if b == b'u' => *e = Esc::LowHex(0, 0),
                            Esc::WantBs | Esc::WantU => return,
                            Esc::No => {
                                if b == b'"' {
                                    if count < min {
                                        return;
                                    }
                                    pop_finish(&mut s);
                                    return accept(s, out);
                                }
                                if count >= max || b < 0x20 {
                                    return;
                                }
                                match b {
                                    b'\\' => *e = Esc::Bs,
                                    0x00..=0x7f => *c += 1,
                                    0xc2..=0xdf => {
                                        *c += 1;
                                        (*nd, *l, *h) = (1, 0x80, 0xbf);
                                    }
                                    0xe0..=0xef => {
                                        *c += 1;
                                        (*nd, *l, *h) = match b {
                                            0xe0 => (2, 0xa0, 0xbf),
                                            0xed => (2, 0x80, 0x9f),
                                            _ => (2, 0x80, 0xbf),
                                        };
                                    }
                                    0xf0..=0xf4 => {
                                        *c += 1;
                                        (*nd, *l, *h) = match b {
                                            0xf0 => (3, 0x90, 0xbf),
                                            0xf4 => (3, 0x80, 0x8f),
                                            _ => (3, 0x80, 0xbf),
                                        };
                                    }
                                    _ => return,
                                }
                            }
                        }
                    }
                    *s.frames.last_mut().unwrap() = f;
                    return accept(s, out);
                }
                Frame::Num { integer, st, digits } => {
                    let next = match (st, b) {
                        (NumSt::Minus, b'0') if !integer => Some(NumSt::Zero),
                        (NumSt::Minus, b'1'..=b'9') => Some(NumSt::Int),
                        (NumSt::Int, b'0'..=b'9') => Some(NumSt::Int),
                        (NumSt::Zero | NumSt::Int, b'.') if !integer => Some(NumSt::Dot),
                        (NumSt::Zero | NumSt::Int | NumSt::Frac, b'e' | b'E') if !integer => Some(NumSt::Exp),
                        (NumSt::Dot | NumSt::Frac, b'0'..=b'9') => Some(NumSt::Frac),
                        (NumSt::Exp, b'+' | b'-') => Some(NumSt::ExpSign),
                        (NumSt::Exp | NumSt::ExpSign | NumSt::ExpDig, b'0'..=b'9') => Some(NumSt::ExpDig),
                        _ => None,
                    };
                    match next {
                        Some(nst) => {
                            // Digits counted per part, bounded so that every number fits an
                            // i64 / finite f64 (serde_json refuses e.g. 1e400).
                            let digits = if !b.is_ascii_digit() {
                                0
                            } else if nst == st || (st == NumSt::ExpSign && nst == NumSt::ExpDig) || st == NumSt::Exp {
                                digits + 1
                            } else {
                                1
                            };
                            let limit = match nst {
                                NumSt::ExpDig => MAX_EXP_DIGITS,
                                NumSt::Frac => MAX_FRAC_DIGITS,
                                _ => MAX_INT_DIGITS,
                            };
                            if digits > limit {
                                return;
                            }
                            *s.frames.last_mut().unwrap() = Frame::Num { integer, st: nst, digits };
                            return accept(s, out);
                        }
                        None if num_can_end(st) && !b.is_ascii_digit() => {
                            pop_finish(&mut s);
                            continue; // the byte belongs to the parent
                        }
                        None => return,
                    }
                }
                Frame::Verdict { .. } => return self.feed_verdict(s, b, out),
                Frame::Lit { node, alive, pos } => {
                    let Node::Lit(alts) = &self.nodes[node as usize] else { return };
                    let p = pos as usize;
                    let mut next = 0u64;
                    let mut ended = false;
                    for (i, a) in alts.iter().enumerate() {
                        if alive >> i & 1 == 1 {
                            if a.len() == p {
                                ended = true;
                            } else if a[p] == b {
                                next |= 1 << i;
                            }
                        }
                    }
                    if ended {
                        let mut c = s.clone();
                        pop_finish(&mut c);
                        self.feed(c, b, out);
                    }
                    if next != 0 {
                        *s.frames.last_mut().unwrap() = Frame::Lit { node, alive: next, pos: pos + 1 };
                        self.lit_maybe_done(&mut s);
                        accept(s, out);
                    }
                    return;
                }
            }
        }
    }

    /// One byte of a verdict (`Node::Verdict`).
    fn feed_verdict(&self, mut s: Stack, b: u8, out: &mut Vec<Stack>) {
        let Some(&Frame::Verdict { node, codes, alive, seen, pos }) = s.frames.last() else { return };
        let Node::Verdict { codes: list } = &self.nodes[node as usize] else { return };
        let p = pos as usize;
        if !codes {
            let mut next = 0u64;
            for (i, h) in VERDICT_HEADS.iter().enumerate() {
                if alive >> i & 1 == 1 && h.get(p) == Some(&b) {
                    next |= 1 << i;
                }
            }
            if next == 0 {
                return;
            }
            // The heads differ at their first byte, so one is alive from here.
            let head = next.trailing_zeros() as usize;
            if p + 1 == VERDICT_HEADS[head].len() {
                if head == 0 {
                    pop_finish(&mut s); // "safe": the whole verdict
                } else {
                    let all = if list.len() == 64 { u64::MAX } else { (1u64 << list.len()) - 1 };
                    *s.frames.last_mut().unwrap() = Frame::Verdict { node, codes: true, alive: all, seen, pos: 0 };
                }
            } else {
                *s.frames.last_mut().unwrap() = Frame::Verdict { node, codes: false, alive: next, seen, pos: pos + 1 };
            }
            return accept(s, out);
        }
        let ended = (0..list.len()).find(|&i| alive >> i & 1 == 1 && list[i].len() == p);
        if let (Some(i), b',') = (ended, b) {
            let all = if list.len() == 64 { u64::MAX } else { (1u64 << list.len()) - 1 };
            let seen = seen | 1 << i;
            if all & !seen != 0 {
                let mut c = s.clone();
                *c.frames.last_mut().unwrap() = Frame::Verdict { node, codes: true, alive: all & !seen, seen, pos: 0 };
                accept(c, out);
            }
        }
        let mut next = 0u64;
        for (i, c) in list.iter().enumerate() {
            if alive >> i & 1 == 1 && c.get(p) == Some(&b) {
                next |= 1 << i;
            }
        }
        if next != 0 {
            *s.frames.last_mut().unwrap() = Frame::Verdict { node, codes: true, alive: next, seen, pos: pos + 1 };
            accept(s, out);
        }
    }

    /// Pop a literal as soon as every alternative still alive has been matched in full.
    fn lit_maybe_done(&self, s: &mut Stack) {
        if let Some(&Frame::Lit { node, alive, pos }) = s.frames.last() {
            let Node::Lit(alts) = &self.nodes[node as usize] else { return };
            let all_done = alts.iter().enumerate().all(|(i, a)| alive >> i & 1 == 0 || a.len() == pos as usize);
            if all_done {
                pop_finish(s);
            }
        }
    }

    /// Whether the stack can end here (the text so far is a complete value).
    pub fn can_end(&self, s: &Stack) -> bool {
        let n = s.frames.len();
        let ended = match s.frames.last() {
            Some(Frame::Root { done }) => return *done,
            Some(Frame::Num { st, .. }) => num_can_end(*st),
            Some(Frame::Lit { node, alive, pos }) => match &self.nodes[*node as usize] {
                Node::Lit(alts) => alts.iter().enumerate().any(|(j, a)| alive >> j & 1 == 1 && a.len() == *pos as usize),
                _ => false,
            },
            Some(Frame::Verdict { node, codes: true, alive, pos, .. }) => match &self.nodes[*node as usize] {
                Node::Verdict { codes } => codes.iter().enumerate().any(|(j, c)| alive >> j & 1 == 1 && c.len() == *pos as usize),
                _ => false,
            },
            _ => false,
        };
        ended && n >= 2 && matches!(s.frames[n - 2], Frame::Root { .. })
    }

    /// Bytes still needed, at least, to complete the value from this stack.
    pub fn dist(&self, s: &Stack) -> u32 {
        if self.can_end(s) {
            return 0;
        }
        let m = |x: NodeId| self.minlen[x as usize];
        let mut total = 0u32;
        for (i, f) in s.frames.iter().enumerate() {
            let d = match *f {
                Frame::Root { .. } => 0,
                Frame::Value(n) => m(n),
                Frame::Obj { node, st, seen, cur } => {
                    let Node::Object { props, required, additional, .. } = &self.nodes[node as usize] else { return INF };
                    let pair = |p: &Prop| p.key.len() as u32 + 2 + m(p.node);
                    let r = required & !seen;
                    let (mut sum, mut k) = (0u32, 0u32);
                    for (j, p) in props.iter().enumerate() {
                        if r >> j & 1 == 1 {
                            sum = sum.saturating_add(pair(p));
                            k += 1;
                        }
                    }
                    let after_val = sum.saturating_add(k) + 1;
                    match st {
                        ObjSt::Open => {
                            if k == 0 {
                                1
                            } else {
                                sum + k
                            }
                        }
                        ObjSt::Comma => {
                            if k == 0 {
                                let mut best = additional.map_or(INF, |a| 3 + m(a));
                                for (j, p) in props.iter().enumerate() {
                                    if seen >> j & 1 == 0 {
                                        best = best.min(pair(p));
                                    }
                                }
                                best + 1
                            } else {
                                sum + k
                            }
                        }
                        ObjSt::InKey => {
                            if let Some(Frame::Key { .. }) = s.frames.get(i + 1) {
                                0 // the key frame counts the rest
                            } else {
                                1 + m(cur) + after_val
                            }
                        }
                        ObjSt::AfterKey => 1 + m(cur) + after_val,
                        ObjSt::AfterVal => after_val,
                    }
                }
                Frame::Key { node, alive, pos } => {
                    let Node::Object { props, required, .. } = &self.nodes[node as usize] else { return INF };
                    let seen = match s.frames.get(i.wrapping_sub(1)) {
                        Some(Frame::Obj { seen, .. }) => *seen,
                        _ => 0,
                    };
                    let mut best = INF;
                    for (j, p) in props.iter().enumerate() {
                        if alive >> j & 1 == 0 {
                            continue;
                        }
                        let r = required & !(seen | 1 << j);
                        let (mut sum, mut k) = (0u32, 0u32);
                        for (q, pq) in props.iter().enumerate() {
                            if r >> q & 1 == 1 {
                                sum = sum.saturating_add(pq.key.len() as u32 + 2 + m(pq.node));
                                k += 1;
                            }
                        }
                        let v = (p.key.len() as u32 - pos as u32) + 1 + m(p.node) + sum.saturating_add(k) + 1;
                        best = best.min(v);
                    }
                    best
                }
                Frame::Arr { node, st, count } => {
                    let Node::Array { items, min, .. } = self.nodes[node as usize] else { return INF };
                    match st {
                        ArrSt::Open => {
                            if min == 0 {
                                1
                            } else {
                                min.saturating_mul(m(items) + 1)
                            }
                        }
                        ArrSt::AfterVal => min.saturating_sub(count).saturating_mul(m(items) + 1) + 1,
                    }
                }
                Frame::Str { node, count, esc, need, .. } => {
                    let min = match self.nodes[node as usize] {
                        Node::String { min, .. } => min,
                        _ => 0,
                    };
                    let e = match esc {
                        Esc::No => 0,
                        Esc::Bs => 1,
                        Esc::Hex(n, _) => 4 - n as u32,
                        Esc::WantBs => 6,
                        Esc::WantU => 5,
                        Esc::LowHex(n, _) => 4 - n as u32,
                    };
                    need as u32 + e + min.saturating_sub(count) + 1
                }
                Frame::Num { st, .. } => match st {
                    NumSt::Minus | NumSt::Dot | NumSt::Exp | NumSt::ExpSign => 1,
                    _ => 0,
                },
                Frame::Verdict { node, codes, alive, pos, .. } => {
                    let Node::Verdict { codes: list } = &self.nodes[node as usize] else { return INF };
                    let left = |c: &[u8]| (c.len() - (pos as usize).min(c.len())) as u32;
                    let shortest = list.iter().map(|c| c.len() as u32).min().unwrap_or(INF);
                    if codes {
                        list.iter().enumerate().filter(|(j, _)| alive >> j & 1 == 1).map(|(_, c)| left(c)).min().unwrap_or(INF)
                    } else if alive & 1 == 1 {
                        left(VERDICT_HEADS[0])
                    } else {
                        left(VERDICT_HEADS[1]).saturating_add(shortest)
                    }
                }
                Frame::Lit { node, alive, pos } => {
                    let Node::Lit(alts) = &self.nodes[node as usize] else { return INF };
                    alts.iter()
                        .enumerate()
                        .filter(|(j, _)| alive >> j & 1 == 1)
                        .map(|(_, a)| (a.len() - pos as usize) as u32)
                        .min()
                        .unwrap_or(INF)
                }
            };
            total = total.saturating_add(d);
        }
        total.min(INF)
    }
}
