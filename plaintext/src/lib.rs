//! The plaintext of Private Processing: the feature request a device sends to a host, and the
//! answer. Only the device and the host link this crate (the relay, gateway and issuer never see
//! these types; a test reads their dependency trees). No feature is named here: a request is
//! named parts of user text and typed parameters, checked against the feature's descriptor.
//!
//! ```json
//! {"feature": "summarize", "parts": {"chat": [{"author": "Ana", "text": "Picnic at 11?"}]}}
//! {"feature": "rewrite", "parts": {"draft": "pls send it"}, "params": {"style": "formal"}, "options": {"seed": 7}}
//! ```
//!
//! A part is a string (text) or a list of `{author, text}` (messages); a parameter is a boolean
//! (flag), an integer (number) or a string (choice). These types hold plaintext: their `Debug`
//! prints sizes, never text, and errors name fields, never values.

use pp_vocab::feature::{is_name, Descriptor, ParamKind, PartKind};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub mod answer;

#[derive(Debug, Clone, PartialEq)]
pub struct FeatureRequest {
    pub feature: String,
    pub parts: BTreeMap<String, PartValue>,
    pub params: BTreeMap<String, ParamValue>,
    pub options: Options,
    /// Whether the device wants the answer in pieces as the feature writes them
    /// ([`answer::AnswerFrame`]); the feature never sees this.
    pub stream: bool,
}

/// User text.
#[derive(Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PartValue {
    Text(String),
    Messages(Vec<ChatMessage>),
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChatMessage {
    pub author: String,
    pub text: String,
}

/// A parameter's value: never user text once checked (a choice is one of the descriptor's words).
#[derive(Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ParamValue {
    Flag(bool),
    Number(i64),
    Choice(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

/// The answer: named parts of text, in the order the feature wrote them, and what it cost.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FeatureResponse {
    pub parts: Vec<AnswerPart>,
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub model_calls: u32,
}

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerPart {
    pub name: String,
    pub text: String,
}

// Plaintext is wiped when these values are dropped (copies made by serde_json's parsing and by
// the sandbox's and model's own buffers are not: THREAT_MODEL.md says what remains).
impl Drop for ChatMessage {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.author);
        zeroize::Zeroize::zeroize(&mut self.text);
    }
}

impl Drop for PartValue {
    fn drop(&mut self) {
        if let PartValue::Text(text) = self {
            zeroize::Zeroize::zeroize(text);
        }
    }
}

impl Drop for AnswerPart {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.text);
    }
}

/// Why a request could not be read or does not fit its feature. Messages name the feature and
/// the field, never a value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("feature {feature}: it takes no part {part}")]
    UnknownPart { feature: String, part: String },
    #[error("feature {feature}: part {part} must be {expected}")]
    PartKind { feature: String, part: String, expected: &'static str },
    #[error("feature {feature}: part {part} is required")]
    MissingPart { feature: String, part: String },
    #[error("feature {feature}: it takes no parameter {param}")]
    UnknownParam { feature: String, param: String },
    #[error("feature {feature}: parameter {param} must be {expected}")]
    ParamKind { feature: String, param: String, expected: String },
    #[error("feature {feature}: parameter {param} is out of range {min}..={max}")]
    OutOfRange { feature: String, param: String, min: i64, max: i64 },
    #[error("feature {feature}: parameter {param} must be one of {choices:?}")]
    UnknownChoice { feature: String, param: String, choices: Vec<String> },
    #[error("feature {feature}: parameter {param} is required")]
    MissingParam { feature: String, param: String },
}

impl RequestError {
    /// A fixed word for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            RequestError::Malformed(_) => "malformed-request",
            RequestError::UnknownPart { .. } => "unknown-part",
            RequestError::PartKind { .. } => "wrong-part-kind",
            RequestError::MissingPart { .. } => "missing-part",
            RequestError::UnknownParam { .. } => "unknown-param",
            RequestError::ParamKind { .. } => "wrong-param-kind",
            RequestError::OutOfRange { .. } => "param-out-of-range",
            RequestError::UnknownChoice { .. } => "unknown-choice",
            RequestError::MissingParam { .. } => "missing-param",
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRequest {
    feature: String,
    #[serde(default)]
    parts: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    params: BTreeMap<String, serde_json::Value>,
    #[serde(default)]
    options: Options,
    #[serde(default)]
    stream: bool,
}

#[derive(Serialize)]
struct WireRequestOut<'a> {
    feature: &'a str,
    parts: &'a BTreeMap<String, PartValue>,
    params: &'a BTreeMap<String, ParamValue>,
    options: &'a Options,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    stream: bool,
}

impl FeatureRequest {
    /// A request for `feature` with no parts or parameters yet.
    pub fn new(feature: &str) -> Self {
        FeatureRequest {
            feature: feature.into(),
            parts: BTreeMap::new(),
            params: BTreeMap::new(),
            options: Options::default(),
            stream: false,
        }
    }

    pub fn text(mut self, part: &str, text: impl Into<String>) -> Self {
        self.parts.insert(part.into(), PartValue::Text(text.into()));
        self
    }

    pub fn messages(mut self, part: &str, messages: Vec<ChatMessage>) -> Self {
        self.parts.insert(part.into(), PartValue::Messages(messages));
        self
    }

    pub fn param(mut self, name: &str, value: ParamValue) -> Self {
        self.params.insert(name.into(), value);
        self
    }

    pub fn choice(self, name: &str, word: &str) -> Self {
        self.param(name, ParamValue::Choice(word.into()))
    }

    /// Asks for the answer in pieces as the feature writes them.
    pub fn streamed(mut self) -> Self {
        self.stream = true;
        self
    }

    pub fn options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Reads a request from JSON bytes (which must be UTF-8).
    pub fn from_json(bytes: &[u8]) -> Result<Self, RequestError> {
        let wire: WireRequest = serde_json::from_slice(bytes).map_err(malformed)?;
        let mut parts = BTreeMap::new();
        for (name, value) in wire.parts {
            let value = match value {
                serde_json::Value::String(text) => PartValue::Text(text),
                serde_json::Value::Array(_) => {
                    let messages = serde_json::from_value(value)
                        .map_err(|e| RequestError::Malformed(format!("part {}: {e}", shown(&name))))?;
                    PartValue::Messages(messages)
                }
                _ => {
                    return Err(RequestError::Malformed(format!(
                        "part {}: a text (a string) or messages (a list of {{author, text}})",
                        shown(&name)
                    )))
                }
            };
            parts.insert(name, value);
        }
        let mut params = BTreeMap::new();
        for (name, value) in wire.params {
            let value = match value {
                serde_json::Value::Bool(flag) => ParamValue::Flag(flag),
                serde_json::Value::Number(n) if n.is_i64() => ParamValue::Number(n.as_i64().unwrap_or(0)),
                serde_json::Value::String(word) => ParamValue::Choice(word),
                _ => {
                    return Err(RequestError::Malformed(format!(
                        "parameter {}: a flag (true/false), an integer or a choice (a string)",
                        shown(&name)
                    )))
                }
            };
            params.insert(name, value);
        }
        Ok(FeatureRequest {
            feature: wire.feature,
            parts,
            params,
            options: wire.options,
            stream: wire.stream,
        })
    }

    pub fn to_json(&self) -> Vec<u8> {
        let wire = WireRequestOut {
            feature: &self.feature,
            parts: &self.parts,
            params: &self.params,
            options: &self.options,
            stream: self.stream,
        };
        serde_json::to_vec(&wire).expect("plain data serializes")
    }

    /// Bytes of user text in the request: what the policy's `max_input_bytes` caps.
    pub fn text_bytes(&self) -> u64 {
        let part_bytes = |value: &PartValue| match value {
            PartValue::Text(text) => text.len(),
            PartValue::Messages(messages) => messages.iter().map(|m| m.author.len() + m.text.len()).sum(),
        };
        self.parts.values().map(part_bytes).sum::<usize>() as u64
    }

    /// Whether the request fits `descriptor`: only its parts and parameters, each of its kind
    /// and in range, every required one present.
    pub fn check(&self, descriptor: &Descriptor) -> Result<(), RequestError> {
        let feature = || descriptor.name.clone();
        for (name, value) in &self.parts {
            let spec = descriptor
                .part(name)
                .ok_or_else(|| RequestError::UnknownPart { feature: feature(), part: shown(name) })?;
            let fits = matches!(
                (spec.kind, value),
                (PartKind::Text, PartValue::Text(_)) | (PartKind::Messages, PartValue::Messages(_))
            );
            if !fits {
                let expected = match spec.kind {
                    PartKind::Text => "a text",
                    PartKind::Messages => "messages",
                };
                return Err(RequestError::PartKind { feature: feature(), part: name.clone(), expected });
            }
        }
        if let Some(missing) =
            descriptor.parts.iter().find(|p| p.required && !self.parts.contains_key(&p.name))
        {
            return Err(RequestError::MissingPart { feature: feature(), part: missing.name.clone() });
        }
        for (name, value) in &self.params {
            let spec = descriptor
                .param(name)
                .ok_or_else(|| RequestError::UnknownParam { feature: feature(), param: shown(name) })?;
            let param = || name.clone();
            match (&spec.kind, value) {
                (ParamKind::Flag, ParamValue::Flag(_)) => {}
                (ParamKind::Number { min, max }, ParamValue::Number(n)) => {
                    if n < min || n > max {
                        return Err(RequestError::OutOfRange {
                            feature: feature(),
                            param: param(),
                            min: *min,
                            max: *max,
                        });
                    }
                }
                (ParamKind::Choice(choices), ParamValue::Choice(word)) => {
                    if !choices.contains(word) {
                        return Err(RequestError::UnknownChoice {
                            feature: feature(),
                            param: param(),
                            choices: choices.clone(),
                        });
                    }
                }
                (kind, _) => {
                    let expected = match kind {
                        ParamKind::Flag => "a flag (true or false)".to_string(),
                        ParamKind::Number { min, max } => format!("an integer in {min}..={max}"),
                        ParamKind::Choice(choices) => format!("one of {choices:?}"),
                    };
                    return Err(RequestError::ParamKind { feature: feature(), param: param(), expected });
                }
            }
        }
        if let Some(missing) =
            descriptor.params.iter().find(|p| p.required && !self.params.contains_key(&p.name))
        {
            return Err(RequestError::MissingParam { feature: feature(), param: missing.name.clone() });
        }
        Ok(())
    }
}

/// A name from the request as errors show it: itself if it is a name, else a placeholder (it
/// could be anything the sender typed).
fn shown(name: &str) -> String {
    if is_name(name) {
        name.to_string()
    } else {
        "(not a name)".to_string()
    }
}

/// serde's messages name the field and the position, and quote at most a variant name or a type.
fn malformed(error: serde_json::Error) -> RequestError {
    RequestError::Malformed(error.to_string())
}

impl FeatureResponse {
    /// The parts' texts, a blank line between them.
    pub fn text(&self) -> String {
        self.parts.iter().map(|p| p.text.as_str()).collect::<Vec<_>>().join("\n\n")
    }

    /// Bytes of text in the answer.
    pub fn text_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.text.len() as u64).sum()
    }
}

impl fmt::Debug for PartValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartValue::Text(text) => write!(f, "Text {{ {} bytes }}", text.len()),
            PartValue::Messages(messages) => write!(f, "Messages {{ {} messages }}", messages.len()),
        }
    }
}

impl fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParamValue::Flag(flag) => write!(f, "Flag({flag})"),
            ParamValue::Number(n) => write!(f, "Number({n})"),
            // Unchecked, a choice could be anything the sender typed.
            ParamValue::Choice(word) => write!(f, "Choice({} bytes)", word.len()),
        }
    }
}

impl fmt::Debug for ChatMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChatMessage {{ {} + {} bytes }}", self.author.len(), self.text.len())
    }
}

impl fmt::Debug for AnswerPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnswerPart {{ {}, {} bytes }}", self.name, self.text.len())
    }
}

impl fmt::Debug for FeatureResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeatureResponse")
            .field("parts", &self.parts)
            .field("prompt_tokens", &self.prompt_tokens)
            .field("completion_tokens", &self.completion_tokens)
            .field("model_calls", &self.model_calls)
            .finish()
    }
}

#[cfg(test)]
mod tests;
