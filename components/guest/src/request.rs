//! Typed access to a request's parts and parameters by name. The host has already checked them
//! against the descriptor (declared, of their kind, in range, required ones present), so a
//! component only decides what an absent optional one means.

use crate::bindings::{ChatMessage, FeatureError, ParamValue, PartValue, Request};

impl Request {
    /// The text part `name`, if the request has one.
    pub fn text(&self, name: &str) -> Option<&str> {
        match self.part(name)? {
            PartValue::Text(text) => Some(text),
            PartValue::Messages(_) => None,
        }
    }

    /// The messages part `name`, oldest first.
    pub fn messages(&self, name: &str) -> Option<&[ChatMessage]> {
        match self.part(name)? {
            PartValue::Messages(messages) => Some(messages),
            PartValue::Text(_) => None,
        }
    }

    pub fn choice(&self, name: &str) -> Option<&str> {
        match self.param(name)? {
            ParamValue::Choice(choice) => Some(choice),
            _ => None,
        }
    }

    pub fn number(&self, name: &str) -> Option<i64> {
        match self.param(name)? {
            ParamValue::Number(number) => Some(*number),
            _ => None,
        }
    }

    pub fn flag(&self, name: &str) -> Option<bool> {
        match self.param(name)? {
            ParamValue::Flag(flag) => Some(*flag),
            _ => None,
        }
    }

    fn part(&self, name: &str) -> Option<&PartValue> {
        self.parts.iter().find(|part| part.name == name).map(|part| &part.value)
    }

    fn param(&self, name: &str) -> Option<&ParamValue> {
        self.params.iter().find(|param| param.name == name).map(|param| &param.value)
    }
}

/// A required part or parameter, or the error that names it (a host that checks requests never
/// lets one be missing).
pub fn required<T>(value: Option<T>, name: &str) -> Result<T, FeatureError> {
    value.ok_or_else(|| FeatureError::InvalidInput(format!("the request has no {name}, which is required")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{Options, Param, Part};

    fn request() -> Request {
        let chat = vec![ChatMessage { author: "Ana".into(), text: "noon?".into() }];
        Request {
            parts: vec![
                Part { name: "draft".into(), value: PartValue::Text("hi".into()) },
                Part { name: "chat".into(), value: PartValue::Messages(chat) },
            ],
            params: vec![
                Param { name: "style".into(), value: ParamValue::Choice("formal".into()) },
                Param { name: "points".into(), value: ParamValue::Number(3) },
                Param { name: "short".into(), value: ParamValue::Flag(true) },
            ],
            options: Options { max_output_tokens: None, temperature: None, seed: None },
        }
    }

    #[test]
    fn finds_parts_and_params_by_name_and_kind() {
        let request = request();
        assert_eq!(request.text("draft"), Some("hi"));
        assert_eq!(request.messages("chat").map(|m| m[0].author.as_str()), Some("Ana"));
        assert_eq!(request.choice("style"), Some("formal"));
        assert_eq!(request.number("points"), Some(3));
        assert_eq!(request.flag("short"), Some(true));
    }

    #[test]
    fn a_missing_name_or_other_kind_is_none() {
        let request = request();
        assert_eq!(request.text("chat"), None);
        assert!(request.messages("draft").is_none());
        assert_eq!(request.text("nope"), None);
        assert_eq!(request.number("style"), None);
        assert_eq!(request.flag("points"), None);
        assert!(
            matches!(required(request.choice("tone"), "tone"), Err(FeatureError::InvalidInput(why)) if why.contains("tone"))
        );
    }
}
