//! Friendly helpers for the features this project ships: a typed call for each, over the
//! generic [`Device::run`]. The rest of the device names no feature; a new feature needs no
//! helper (`pp run NAME --part …` and [`Device::run`] call any).

use crate::device::{Device, DeviceError, Outcome};
use pp_plaintext::{ChatMessage, FeatureRequest};

/// The styles of `rewrite`, as its descriptor lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Formal,
    Friendly,
    Concise,
    FixGrammar,
}

impl Style {
    pub fn as_str(self) -> &'static str {
        match self {
            Style::Formal => "formal",
            Style::Friendly => "friendly",
            Style::Concise => "concise",
            Style::FixGrammar => "fix-grammar",
        }
    }
}

/// `summarize`: the chat's messages, oldest first, as its part `chat`.
pub fn summarize_request(messages: Vec<ChatMessage>) -> FeatureRequest {
    FeatureRequest::new("summarize").messages("chat", messages)
}

/// `rewrite`: the draft as its part `draft`, the style as its parameter `style`.
pub fn rewrite_request(draft: &str, style: Style) -> FeatureRequest {
    FeatureRequest::new("rewrite").text("draft", draft.trim()).choice("style", style.as_str())
}

impl Device {
    /// Summarizes a chat (`chat_name` is what `keep_on_device` refers to).
    pub async fn summarize(
        &self,
        chat_name: Option<&str>,
        messages: Vec<ChatMessage>,
    ) -> Result<Outcome, DeviceError> {
        self.run(&summarize_request(messages), chat_name).await
    }

    /// Rewrites a draft in a style.
    pub async fn rewrite(&self, draft: &str, style: Style) -> Result<Outcome, DeviceError> {
        self.run(&rewrite_request(draft, style), None).await
    }
}
