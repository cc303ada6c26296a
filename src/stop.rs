//! User stop strings over streamed text. A stop string can span tokens, so text that could be the
//! start of one is held back until it either completes the stop (generation ends, the stop text is
//! never emitted) or stops matching (it is released).

#[derive(Clone, Debug, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    pending: String,
}

impl StopStrings {
    pub fn new(stops: &[String]) -> Self {
        Self { stops: stops.iter().filter(|s| !s.is_empty()).cloned().collect(), pending: String::new() }
    }

    /// Add streamed text; returns the text that is safe to show, and whether a stop string ended
    /// the generation.
    pub fn push(&mut self, text: &str) -> (String, bool) {
        if self.stops.is_empty() {
            return (text.to_string(), false);
        }
        self.pending.push_str(text);
        // The earliest complete stop string wins.
        if let Some(at) = self.stops.iter().filter_map(|s| self.pending.find(s.as_str())).min() {
            let out = self.pending[..at].to_string();
            self.pending.clear();
            return (out, true);
        }
        // Hold back the longest tail that is a prefix of some stop string.
        let keep_from = self
            .pending
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| self.stops.iter().any(|s| s.starts_with(&self.pending[i..])))
            .unwrap_or(self.pending.len());
        let out = self.pending[..keep_from].to_string();
        self.pending.drain(..keep_from);
        (out, false)
    }

    /// The generation ended for another reason: release what was held back.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(stops: &[&str], pieces: &[&str]) -> (String, bool) {
        let mut m = StopStrings::new(&stops.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let mut out = String::new();
        for p in pieces {
            let (t, stop) = m.push(p);
            out.push_str(&t);
            if stop {
                return (out, true);
            }
        }
        out.push_str(&m.finish());
        (out, false)
    }

    #[test]
    fn stops_across_pieces_without_emitting_the_stop() {
        assert_eq!(feed(&["\nUser:"], &["Hello", " there\n", "Us", "er:", " more"]), ("Hello there".into(), true));
        assert_eq!(feed(&["###"], &["a#", "#b"]), ("a##b".into(), false));
        assert_eq!(feed(&["END", "STOP"], &["xxSTO", "P END"]), ("xx".into(), true));
        assert_eq!(feed(&["é!"], &["café", "!"]), ("caf".into(), true));
        assert_eq!(feed(&[], &["a", "b"]), ("ab".into(), false));
    }

    #[test]
    fn releases_held_text_as_soon_as_it_cannot_match() {
        let mut m = StopStrings::new(&["</s>".to_string()]);
        assert_eq!(m.push("a<"), ("a".into(), false));
        assert_eq!(m.push("/x"), ("</x".into(), false));
    }
}
