//! A builder for the feature's [`Descriptor`], which `describe` returns:
//!
//! ```
//! # use pp_guest::Descriptor;
//! Descriptor::new("rewrite", "Rewrites a draft in a style")
//!     .text_part("draft", "the text to rewrite", true)
//!     .choice_param("style", "how the rewrite should read", &["formal", "concise"], true)
//!     .output("rewrite", "the draft rewritten")
//!     .event("request-started", &["prompt-tokens"]);
//! ```
//!
//! The host checks the result (names, counts, ranges) and compares it with the release policy's.

use crate::bindings::{
    Descriptor, EventSpec, NumberRange, OutputSpec, ParamKind, ParamSpec, PartKind, PartSpec,
};

impl Descriptor {
    pub fn new(name: &str, summary: &str) -> Descriptor {
        Descriptor {
            name: name.into(),
            summary: summary.into(),
            parts: Vec::new(),
            params: Vec::new(),
            outputs: Vec::new(),
            events: Vec::new(),
        }
    }

    /// One text: a draft, a note.
    pub fn text_part(self, name: &str, summary: &str, required: bool) -> Descriptor {
        self.part(name, summary, PartKind::Text, required)
    }

    /// A chat's messages, oldest first.
    pub fn messages_part(self, name: &str, summary: &str, required: bool) -> Descriptor {
        self.part(name, summary, PartKind::Messages, required)
    }

    pub fn flag_param(self, name: &str, summary: &str, required: bool) -> Descriptor {
        self.param(name, summary, ParamKind::Flag, required)
    }

    /// A whole number in `min ..= max`.
    pub fn number_param(self, name: &str, summary: &str, min: i64, max: i64, required: bool) -> Descriptor {
        self.param(name, summary, ParamKind::Number(NumberRange { min, max }), required)
    }

    /// One of `choices`.
    pub fn choice_param(self, name: &str, summary: &str, choices: &[&str], required: bool) -> Descriptor {
        let choices = choices.iter().map(|c| c.to_string()).collect();
        self.param(name, summary, ParamKind::Choice(choices), required)
    }

    /// A named part of the answer.
    pub fn output(mut self, name: &str, summary: &str) -> Descriptor {
        self.outputs.push(OutputSpec { name: name.into(), summary: summary.into() });
        self
    }

    /// A log event and the numeric fields it may carry.
    pub fn event(mut self, name: &str, fields: &[&str]) -> Descriptor {
        let fields = fields.iter().map(|f| f.to_string()).collect();
        self.events.push(EventSpec { name: name.into(), fields });
        self
    }

    fn part(mut self, name: &str, summary: &str, kind: PartKind, required: bool) -> Descriptor {
        self.parts.push(PartSpec { name: name.into(), summary: summary.into(), kind, required });
        self
    }

    fn param(mut self, name: &str, summary: &str, kind: ParamKind, required: bool) -> Descriptor {
        self.params.push(ParamSpec { name: name.into(), summary: summary.into(), kind, required });
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_in_declaration_order() {
        let descriptor = Descriptor::new("demo", "a demo")
            .text_part("draft", "the text", true)
            .messages_part("chat", "the chat", false)
            .choice_param("style", "how", &["formal", "concise"], true)
            .number_param("points", "how many", 1, 5, false)
            .flag_param("short", "shorter", false)
            .output("text", "the answer")
            .event("request-started", &["prompt-tokens"]);
        assert_eq!((descriptor.name.as_str(), descriptor.summary.as_str()), ("demo", "a demo"));
        let parts: Vec<_> = descriptor.parts.iter().map(|p| (p.name.as_str(), p.kind, p.required)).collect();
        assert_eq!(parts, [("draft", PartKind::Text, true), ("chat", PartKind::Messages, false)]);
        assert!(matches!(&descriptor.params[0].kind, ParamKind::Choice(c) if c == &["formal", "concise"]));
        assert!(matches!(descriptor.params[1].kind, ParamKind::Number(NumberRange { min: 1, max: 5 })));
        assert!(matches!(descriptor.params[2].kind, ParamKind::Flag));
        assert_eq!(descriptor.outputs[0].name, "text");
        assert_eq!(descriptor.events[0].fields, ["prompt-tokens"]);
    }
}
