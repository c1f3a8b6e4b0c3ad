//! Passing a feature's writes on as they happen, for a device that asked for a stream: each
//! `output.write` becomes one piece (a `begin-part` rides on the write that follows it). Pieces
//! are capped: past [`MAX_STREAMED_PIECES`], writes are held and merged per part until the end,
//! so a component that writes a character at a time cannot make thousands of padded frames.

use pp_plaintext::answer::Piece;

/// Pieces passed on one by one; the rest of the answer follows in one piece per part.
pub const MAX_STREAMED_PIECES: usize = 64;

/// Takes each piece; answers `false` when nobody reads any more (the device went away).
pub type PieceSink = Box<dyn FnMut(Piece) -> bool + Send>;

pub struct Streamer {
    sink: PieceSink,
    begun: Option<String>,
    sent: usize,
    held: Vec<Piece>,
    /// The reader went away: the request should stop.
    pub closed: bool,
}

impl Streamer {
    pub fn new(sink: PieceSink) -> Self {
        Streamer { sink, begun: None, sent: 0, held: Vec::new(), closed: false }
    }

    pub fn begin_part(&mut self, name: &str) {
        // A part begun and left empty still shows on the device.
        if let Some(part) = self.begun.take() {
            self.pass(Piece { part: Some(part), text: String::new() });
        }
        self.begun = Some(name.to_string());
    }

    pub fn write(&mut self, text: &str) {
        if text.is_empty() {
            return;
        }
        let part = self.begun.take();
        self.pass(Piece { part, text: text.to_string() });
    }

    /// Sends what is held; called once the feature has returned.
    pub fn finish(&mut self) {
        if let Some(part) = self.begun.take() {
            self.pass(Piece { part: Some(part), text: String::new() });
        }
        for piece in std::mem::take(&mut self.held) {
            self.send(piece);
        }
    }

    fn pass(&mut self, piece: Piece) {
        if self.sent < MAX_STREAMED_PIECES {
            self.sent += 1;
            return self.send(piece);
        }
        match self.held.last_mut() {
            Some(last) if piece.part.is_none() => last.text.push_str(&piece.text),
            _ => self.held.push(piece),
        }
    }

    fn send(&mut self, piece: Piece) {
        if !self.closed && !(self.sink)(piece) {
            self.closed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    type Seen = Arc<Mutex<Vec<(Option<String>, String)>>>;

    fn collecting() -> (Streamer, Seen) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let into = seen.clone();
        let sink: PieceSink = Box::new(move |piece: Piece| {
            into.lock().unwrap().push((piece.part.clone(), piece.text.clone()));
            true
        });
        (Streamer::new(sink), seen)
    }

    #[test]
    fn a_begun_part_rides_on_the_next_write_and_empty_parts_still_show() {
        let (mut streamer, seen) = collecting();
        streamer.begin_part("reply");
        streamer.write("Sure");
        streamer.write("");
        streamer.write("!");
        streamer.begin_part("reply");
        streamer.begin_part("reply");
        streamer.write("No");
        streamer.finish();
        let some = |s: &str| Some(s.to_string());
        assert_eq!(
            *seen.lock().unwrap(),
            [
                (some("reply"), "Sure".into()),
                (None, "!".into()),
                (some("reply"), String::new()),
                (some("reply"), "No".into())
            ]
        );
    }

    #[test]
    fn past_the_cap_writes_are_merged_per_part_until_the_end() {
        let (mut streamer, seen) = collecting();
        streamer.begin_part("summary");
        for _ in 0..MAX_STREAMED_PIECES + 100 {
            streamer.write("x");
        }
        streamer.begin_part("note");
        streamer.write("a");
        streamer.write("b");
        assert_eq!(seen.lock().unwrap().len(), MAX_STREAMED_PIECES, "the rest is held");
        streamer.finish();
        let seen = seen.lock().unwrap();
        assert_eq!(seen.len(), MAX_STREAMED_PIECES + 2);
        assert_eq!(seen[MAX_STREAMED_PIECES], (None, "x".repeat(100)));
        assert_eq!(seen[MAX_STREAMED_PIECES + 1], (Some("note".into()), "ab".into()));
    }

    #[test]
    fn a_reader_gone_closes_the_stream() {
        let sink: PieceSink = Box::new(|_| false);
        let mut streamer = Streamer::new(sink);
        streamer.begin_part("summary");
        streamer.write("x");
        assert!(streamer.closed);
    }
}
