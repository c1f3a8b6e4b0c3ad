//! The feature request a device sends to a host, and the response, as JSON:
//!
//! ```json
//! {"feature": "summarize", "input": {"messages": [{"author": "Ana", "text": "Picnic at 11?"}]}}
//! {"feature": "rewrite", "input": {"draft": "pls send it", "style": "formal"}, "options": {"seed": 7}}
//! ```
//!
//! These types hold plaintext: their `Debug` prints sizes, never text, so a stray `{:?}` in a log
//! cannot leak a message.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRequest {
    pub input: FeatureInput,
    pub options: Options,
}

#[derive(Clone, PartialEq)]
pub enum FeatureInput {
    Summarize { messages: Vec<ChatMessage> },
    Rewrite { draft: String, style: Style },
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub author: String,
    pub text: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Style {
    Formal,
    Friendly,
    Concise,
    FixGrammar,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FeatureResponse {
    pub text: String,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub model_calls: u32,
}

// Plaintext is wiped when these values are dropped (copies made by serde_json's parsing and by
// the sandbox's and model's own buffers are not: THREAT_MODEL.md says what remains).
impl Drop for ChatMessage {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.author);
        zeroize::Zeroize::zeroize(&mut self.text);
    }
}

impl Drop for FeatureResponse {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.text);
    }
}

/// Why a request could not be read. Messages name fields and positions, never content.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("unknown feature {0:?} (known: summarize, rewrite)")]
    UnknownFeature(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    feature: String,
    input: serde_json::Value,
    #[serde(default)]
    options: Options,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SummarizeWire {
    messages: Vec<ChatMessage>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RewriteWire {
    draft: String,
    style: Style,
}

impl FeatureRequest {
    /// Reads a request from JSON bytes (which must be UTF-8).
    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        let wire: WireRequest = serde_json::from_slice(bytes).map_err(malformed)?;
        let input = match wire.feature.as_str() {
            "summarize" => {
                let SummarizeWire { messages } = serde_json::from_value(wire.input).map_err(malformed)?;
                FeatureInput::Summarize { messages }
            }
            "rewrite" => {
                let RewriteWire { draft, style } = serde_json::from_value(wire.input).map_err(malformed)?;
                FeatureInput::Rewrite { draft, style }
            }
            other => return Err(RequestError::UnknownFeature(other.chars().take(64).collect())),
        };
        Ok(FeatureRequest { input, options: wire.options })
    }

    pub fn to_json(&self) -> Vec<u8> {
        let input = match &self.input {
            FeatureInput::Summarize { messages } => {
                serde_json::to_value(SummarizeWire { messages: messages.clone() })
            }
            FeatureInput::Rewrite { draft, style } => {
                serde_json::to_value(RewriteWire { draft: draft.clone(), style: *style })
            }
        }
        .expect("plain data serializes");
        let wire = serde_json::json!({
            "feature": self.input.feature(),
            "input": input,
            "options": self.options,
        });
        serde_json::to_vec(&wire).expect("plain data serializes")
    }
}

/// serde's messages name the field and the position, and quote at most a variant name or a type.
fn malformed(error: serde_json::Error) -> RequestError {
    RequestError::Malformed(error.to_string())
}

impl FeatureInput {
    /// The feature this input is for, as the release policy names it.
    pub fn feature(&self) -> &'static str {
        match self {
            FeatureInput::Summarize { .. } => "summarize",
            FeatureInput::Rewrite { .. } => "rewrite",
        }
    }

    /// Bytes of text in the input: what the policy's `max_input_bytes` caps.
    pub fn text_bytes(&self) -> u64 {
        let bytes = match self {
            FeatureInput::Summarize { messages } => {
                messages.iter().map(|m| m.author.len() + m.text.len()).sum()
            }
            FeatureInput::Rewrite { draft, .. } => draft.len(),
        };
        bytes as u64
    }
}

impl fmt::Debug for FeatureInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FeatureInput::Summarize { messages } => {
                write!(f, "Summarize {{ {} messages, {} bytes }}", messages.len(), self.text_bytes())
            }
            FeatureInput::Rewrite { style, .. } => {
                write!(f, "Rewrite {{ {style:?}, {} bytes }}", self.text_bytes())
            }
        }
    }
}

impl fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChatMessage {{ {} + {} bytes }}", self.author.len(), self.text.len())
    }
}

impl fmt::Debug for FeatureResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeatureResponse")
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("prompt_tokens", &self.prompt_tokens)
            .field("completion_tokens", &self.completion_tokens)
            .field("model_calls", &self.model_calls)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY: &str = "canary-7f3a9c";

    #[test]
    fn reads_both_features_and_round_trips() {
        let summarize = br#"{"feature":"summarize","input":{"messages":[{"author":"Ana","text":"hi"}]}}"#;
        let request = FeatureRequest::from_json(summarize).unwrap();
        assert_eq!(request.input.feature(), "summarize");
        assert_eq!(FeatureRequest::from_json(&request.to_json()).unwrap(), request);

        let rewrite =
            br#"{"feature":"rewrite","input":{"draft":"yo","style":"fix-grammar"},"options":{"seed":3}}"#;
        let request = FeatureRequest::from_json(rewrite).unwrap();
        assert_eq!(request.options.seed, Some(3));
        assert!(matches!(request.input, FeatureInput::Rewrite { style: Style::FixGrammar, .. }));
        assert_eq!(FeatureRequest::from_json(&request.to_json()).unwrap(), request);
    }

    #[test]
    fn bad_requests_get_precise_errors() {
        let style = br#"{"feature":"rewrite","input":{"draft":"yo","style":"poetic"}}"#;
        let message = FeatureRequest::from_json(style).unwrap_err().to_string();
        assert!(message.contains("unknown variant `poetic`"), "{message}");
        assert!(message.contains("fix-grammar"), "{message}");

        let feature = br#"{"feature":"translate","input":{}}"#;
        assert_eq!(
            FeatureRequest::from_json(feature).unwrap_err(),
            RequestError::UnknownFeature("translate".into())
        );

        let extra = br#"{"feature":"rewrite","input":{"draft":"yo","style":"formal","tone":1}}"#;
        assert!(FeatureRequest::from_json(extra).unwrap_err().to_string().contains("tone"));

        let not_utf8 = b"{\"feature\":\"rewrite\",\"input\":{\"draft\":\"\xff\xfe\",\"style\":\"formal\"}}";
        assert!(matches!(FeatureRequest::from_json(not_utf8), Err(RequestError::Malformed(_))));

        assert!(matches!(FeatureRequest::from_json(b"{\"feature\""), Err(RequestError::Malformed(_))));
    }

    #[test]
    fn debug_never_prints_plaintext() {
        let request = FeatureRequest {
            input: FeatureInput::Summarize {
                messages: vec![ChatMessage { author: CANARY.into(), text: CANARY.into() }],
            },
            options: Options::default(),
        };
        let response =
            FeatureResponse { text: CANARY.into(), prompt_tokens: 1, completion_tokens: 2, model_calls: 1 };
        let printed = format!(
            "{request:?} {response:?} {:?}",
            FeatureInput::Rewrite { draft: CANARY.into(), style: Style::Formal }
        );
        assert!(!printed.contains(CANARY), "{printed}");
    }
}
