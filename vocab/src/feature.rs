//! What a feature is and takes: its descriptor, as the component's `describe()` returns it and
//! the release policy records it (so it is attested, in the ledger, and shown to devices).
//!
//! No feature is named here: the host, the device and every other party learn the features of a
//! release from these records alone.

use serde::{Deserialize, Serialize};

/// A feature's descriptor. In the policy: `[features.NAME.descriptor]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Descriptor {
    pub name: String,
    /// One line for people choosing a feature.
    pub summary: String,
    #[serde(default)]
    pub parts: Vec<PartSpec>,
    #[serde(default)]
    pub params: Vec<ParamSpec>,
    pub outputs: Vec<OutputSpec>,
    #[serde(default)]
    pub events: Vec<EventSpec>,
}

/// Named user text the feature reads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartSpec {
    pub name: String,
    pub summary: String,
    pub kind: PartKind,
    pub required: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PartKind {
    /// One text (a draft, a note).
    Text,
    /// A chat's messages with their authors, oldest first.
    Messages,
}

impl PartKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PartKind::Text => "text",
            PartKind::Messages => "messages",
        }
    }
}

/// A typed parameter (never user text: its value is a flag, a bounded number or a listed word).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParamSpec {
    pub name: String,
    pub summary: String,
    pub kind: ParamKind,
    pub required: bool,
}

/// In TOML: `kind = "flag"`, `kind = { number = { min = 1, max = 5 } }` or
/// `kind = { choice = ["formal", "friendly"] }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    Flag,
    Number { min: i64, max: i64 },
    Choice(Vec<String>),
}

/// A named part of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub name: String,
    pub summary: String,
}

/// A log event the component may emit, and the numeric fields it may carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    pub name: String,
    #[serde(default)]
    pub fields: Vec<String>,
}

/// Longest name of a feature, part, parameter, choice, output, event or field.
pub const MAX_NAME_CHARS: usize = 40;
pub const MAX_SUMMARY_CHARS: usize = 200;
/// Parts, parameters, outputs or events a descriptor declares at most.
pub const MAX_DECLARED: usize = 16;
pub const MAX_CHOICES: usize = 32;
/// Fields one event carries at most.
pub const MAX_EVENT_FIELDS: usize = 4;

impl Descriptor {
    /// Checks the descriptor's shape: names are short kebab-case words, unique where they must
    /// be; numbers' ranges are ordered; choices are listed; there is an output.
    pub fn check(&self) -> Result<(), String> {
        name("the feature's name", &self.name)?;
        summary(&format!("feature {}", self.name), &self.summary)?;
        let at = |what: &str| format!("feature {}: {what}", self.name);
        let inputs = self.parts.iter().map(|p| &p.name).chain(self.params.iter().map(|p| &p.name));
        unique(&at("parts and parameters"), inputs)?;
        unique(&at("outputs"), self.outputs.iter().map(|o| &o.name))?;
        unique(&at("events"), self.events.iter().map(|e| &e.name))?;
        for (what, count) in [
            ("parts", self.parts.len()),
            ("parameters", self.params.len()),
            ("outputs", self.outputs.len()),
            ("events", self.events.len()),
        ] {
            if count > MAX_DECLARED {
                return Err(at(&format!("{count} {what}; at most {MAX_DECLARED}")));
            }
        }
        if self.outputs.is_empty() {
            return Err(at("no output: a feature answers with at least one named part"));
        }
        for part in &self.parts {
            name(&at("a part"), &part.name)?;
            summary(&at(&format!("part {}", part.name)), &part.summary)?;
        }
        for output in &self.outputs {
            name(&at("an output"), &output.name)?;
            summary(&at(&format!("output {}", output.name)), &output.summary)?;
        }
        for param in &self.params {
            name(&at("a parameter"), &param.name)?;
            summary(&at(&format!("parameter {}", param.name)), &param.summary)?;
            let here = at(&format!("parameter {}", param.name));
            match &param.kind {
                ParamKind::Flag => {}
                ParamKind::Number { min, max } if min > max => {
                    return Err(format!("{here}: min {min} is above max {max}"));
                }
                ParamKind::Number { .. } => {}
                ParamKind::Choice(choices) => {
                    if choices.is_empty() || choices.len() > MAX_CHOICES {
                        return Err(format!("{here}: 1 to {MAX_CHOICES} choices, not {}", choices.len()));
                    }
                    unique(&format!("{here}: choices"), choices.iter())?;
                    for choice in choices {
                        name(&format!("{here}: a choice"), choice)?;
                    }
                }
            }
        }
        for event in &self.events {
            name(&at("an event"), &event.name)?;
            let here = at(&format!("event {}", event.name));
            if event.fields.len() > MAX_EVENT_FIELDS {
                return Err(format!("{here}: {} fields; at most {MAX_EVENT_FIELDS}", event.fields.len()));
            }
            unique(&format!("{here}: fields"), event.fields.iter())?;
            for field in &event.fields {
                name(&format!("{here}: a field"), field)?;
            }
        }
        Ok(())
    }

    pub fn part(&self, name: &str) -> Option<&PartSpec> {
        self.parts.iter().find(|p| p.name == name)
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn event(&self, name: &str) -> Option<&EventSpec> {
        self.events.iter().find(|e| e.name == name)
    }

    pub fn has_output(&self, name: &str) -> bool {
        self.outputs.iter().any(|o| o.name == name)
    }
}

/// A short kebab-case word: what every name in a descriptor is (they reach logs and errors).
pub fn is_name(word: &str) -> bool {
    let mut chars = word.chars();
    word.len() <= MAX_NAME_CHARS
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && word.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn name(what: &str, word: &str) -> Result<(), String> {
    if is_name(word) {
        Ok(())
    } else {
        Err(format!(
            "{what} {:?} is not a name: a lowercase letter, then letters, digits or '-', at most {MAX_NAME_CHARS}",
            word.chars().take(MAX_NAME_CHARS + 8).collect::<String>()
        ))
    }
}

fn summary(what: &str, text: &str) -> Result<(), String> {
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_SUMMARY_CHARS || text.contains('\n') {
        return Err(format!("{what}: the summary is one line of 1 to {MAX_SUMMARY_CHARS} characters"));
    }
    Ok(())
}

fn unique<'a>(what: &str, names: impl Iterator<Item = &'a String>) -> Result<(), String> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(format!("{what}: {name:?} appears twice"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite() -> Descriptor {
        Descriptor {
            name: "rewrite".into(),
            summary: "Rewrites a draft in a style.".into(),
            parts: vec![PartSpec {
                name: "draft".into(),
                summary: "the draft".into(),
                kind: PartKind::Text,
                required: true,
            }],
            params: vec![ParamSpec {
                name: "style".into(),
                summary: "how it should sound".into(),
                kind: ParamKind::Choice(vec!["formal".into(), "friendly".into()]),
                required: true,
            }],
            outputs: vec![OutputSpec { name: "rewrite".into(), summary: "the draft rewritten".into() }],
            events: vec![EventSpec { name: "request-started".into(), fields: vec!["prompt-tokens".into()] }],
        }
    }

    #[test]
    fn a_good_descriptor_passes_and_reads_back_from_toml() {
        let descriptor = rewrite();
        descriptor.check().unwrap();
        let text = toml::to_string(&descriptor).unwrap();
        assert!(text.contains("choice = [\"formal\", \"friendly\"]"), "{text}");
        assert_eq!(toml::from_str::<Descriptor>(&text).unwrap(), descriptor);
    }

    #[test]
    fn bad_descriptors_are_named() {
        type Change = fn(&mut Descriptor);
        let cases: [(&str, Change); 7] = [
            ("is not a name", |d| d.name = "Re write".into()),
            ("appears twice", |d| d.params[0].name = "draft".into()),
            ("no output", |d| d.outputs.clear()),
            ("min 5 is above max 1", |d| d.params[0].kind = ParamKind::Number { min: 5, max: 1 }),
            ("choices: \"formal\" appears twice", |d| {
                d.params[0].kind = ParamKind::Choice(vec!["formal".into(), "formal".into()])
            }),
            ("5 fields; at most 4", |d| d.events[0].fields = (0..5).map(|i| format!("f{i}")).collect()),
            ("one line", |d| d.parts[0].summary = "two\nlines".into()),
        ];
        for (expected, change) in cases {
            let mut descriptor = rewrite();
            change(&mut descriptor);
            let message = descriptor.check().unwrap_err();
            assert!(message.contains(expected), "{expected:?} not in {message:?}");
        }
    }
}
