//! What the host sends back inside the session: a whole answer in one frame, or — when the device
//! asked for a stream — the answer's pieces as the feature writes them, then a last frame with what
//! it cost. Either way an error may end it.
//!
//! ```json
//! {"ok": {"parts": [{"name": "summary", "text": "- Picnic on Saturday"}], "prompt-tokens": 90, …}}
//! {"piece": {"part": "summary", "text": "- Picnic on Saturday"}}   … more pieces …
//! {"end": {"prompt-tokens": 90, "completion-tokens": 12, "model-calls": 1}}
//! {"error": {"code": "model-error", "message": "the model failed"}}
//! ```

use crate::{AnswerPart, FeatureResponse};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum AnswerFrame {
    /// The whole answer (the device did not ask for a stream).
    Ok(Box<FeatureResponse>),
    /// The next piece of a streamed answer.
    Piece(Piece),
    /// A streamed answer is complete.
    End(Cost),
    /// The request failed (after any pieces already sent: they are not an answer).
    Error { code: String, message: String },
}

/// Text the feature wrote; `part` is set when it begins a new part of the answer.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Piece {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub part: Option<String>,
    pub text: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Cost {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub model_calls: u32,
}

impl AnswerFrame {
    pub fn from_json(bytes: &[u8]) -> Result<Self, String> {
        serde_json::from_slice(bytes).map_err(|e| e.to_string())
    }

    pub fn to_json(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(serde_json::to_vec(self).expect("plain data serializes"))
    }
}

/// Puts a streamed answer back together, piece by piece.
#[derive(Default)]
pub struct Assembly {
    parts: Vec<AnswerPart>,
    pieces: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    #[error("the stream's first piece begins no part of the answer")]
    NoPart,
}

impl Assembly {
    pub fn push(&mut self, piece: &Piece) -> Result<(), StreamError> {
        match &piece.part {
            Some(name) => self.parts.push(AnswerPart { name: name.clone(), text: String::new() }),
            None if self.parts.is_empty() => return Err(StreamError::NoPart),
            None => {}
        }
        self.parts.last_mut().expect("a part was begun").text.push_str(&piece.text);
        self.pieces += 1;
        Ok(())
    }

    /// Pieces received so far.
    pub fn pieces(&self) -> usize {
        self.pieces
    }

    pub fn finish(self, cost: Cost) -> FeatureResponse {
        FeatureResponse {
            parts: self.parts,
            prompt_tokens: cost.prompt_tokens,
            completion_tokens: cost.completion_tokens,
            model_calls: cost.model_calls,
        }
    }
}

impl Drop for Piece {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.text);
    }
}

impl fmt::Debug for Piece {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Piece {{ part: {:?}, {} bytes }}", self.part, self.text.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(part: Option<&str>, text: &str) -> Piece {
        Piece { part: part.map(str::to_string), text: text.into() }
    }

    #[test]
    fn pieces_make_the_parts_they_begin() {
        let mut assembly = Assembly::default();
        for p in [piece(Some("reply"), "Sure"), piece(None, ", see you"), piece(Some("reply"), "No")] {
            assembly.push(&p).unwrap();
        }
        let answer = assembly.finish(Cost { prompt_tokens: 3, completion_tokens: 2, model_calls: 1 });
        let texts: Vec<(&str, &str)> =
            answer.parts.iter().map(|p| (p.name.as_str(), p.text.as_str())).collect();
        assert_eq!(texts, [("reply", "Sure, see you"), ("reply", "No")]);
        assert_eq!(answer.model_calls, 1);
        assert_eq!(Assembly::default().push(&piece(None, "orphan")), Err(StreamError::NoPart));
    }

    #[test]
    fn frames_round_trip_and_unknown_ones_are_refused() {
        let frame = AnswerFrame::Piece(piece(Some("summary"), "- Saturday"));
        assert_eq!(AnswerFrame::from_json(&frame.to_json()), Ok(frame));
        assert!(AnswerFrame::from_json(br#"{"pieces": {"text": "x"}}"#).is_err());
        assert!(AnswerFrame::from_json(br#"{"end": {"prompt-tokens": 1}}"#).is_err());
    }
}
