//! The release policy (`policies/release.toml`): for each feature its component, digest and
//! limits; the model and its digest; the log allow-list. Parsing is strict: an unknown key, a
//! missing key or a bad value is an error that names the file and the key.
//!
//! Its canonical form, the release manifest ([`ReleasePolicy::manifest`]), is what the host's
//! attestation evidence and the transparency ledger refer to by digest.

use crate::config::{self, ConfigError};
use crate::feature::Descriptor;
use crate::Sha256;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReleasePolicy {
    pub host: HostPolicy,
    pub model: ModelPolicy,
    pub features: BTreeMap<String, FeaturePolicy>,
    pub log: LogPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPolicy {
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPolicy {
    pub name: String,
    /// File name inside the model directory.
    pub file: String,
    pub sha256: Sha256,
    pub backend: ModelBackend,
    /// Tokens of context (prompt plus generated text) each request gets.
    pub context_tokens: u32,
    pub threads: u32,
    /// Upper bound on `max-tokens` of any one model call.
    pub max_new_tokens: u32,
}

/// Which engine runs the model. A GPU backend would be another variant: a configuration change,
/// recorded here and so attested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelBackend {
    /// llama.cpp on the CPU.
    LlamaCppCpu,
    /// Canned replies, no model: only the developer binary `pp-host-dev` runs it, so a host
    /// answering that way says so in the manifest its evidence binds.
    Scripted,
}

impl ModelBackend {
    /// The name the policy file uses (serde's kebab-case of the variant).
    pub fn as_str(self) -> &'static str {
        match self {
            ModelBackend::LlamaCppCpu => "llama-cpp-cpu",
            ModelBackend::Scripted => "scripted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturePolicy {
    /// File name inside the component directory.
    pub component: String,
    pub sha256: Sha256,
    /// Wasm fuel (about one unit per instruction) a request may burn; model time is not counted.
    pub fuel: u64,
    pub max_memory_bytes: u64,
    /// Bytes of plaintext input (the texts of the request) at most.
    pub max_input_bytes: u64,
    pub max_output_bytes: u64,
    /// Model calls one request may make (fuel does not count model time).
    pub max_model_calls: u32,
    /// Tokens one request may generate over all its model calls.
    pub max_generated_tokens: u32,
    /// What the component must say `describe()` returns; the host refuses it otherwise.
    pub descriptor: Descriptor,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPolicy {
    /// The only fields a host log line may carry.
    pub allowed_fields: Vec<String>,
    /// The only events a component may emit (each feature's descriptor names its own).
    pub allowed_events: Vec<String>,
}

impl ReleasePolicy {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        Self::checked(config::load(file)?, file)
    }

    /// Parses and checks a policy; `file` only names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<Self, ConfigError> {
        Self::checked(config::parse(text, file)?, file)
    }

    fn checked(policy: ReleasePolicy, file: &Path) -> Result<Self, ConfigError> {
        policy.check().map_err(|message| ConfigError::Invalid { file: file.into(), message })?;
        Ok(policy)
    }

    fn check(&self) -> Result<(), String> {
        plain_file_name("model.file", &self.model.file)?;
        for (key, value) in [
            ("model.context_tokens", self.model.context_tokens),
            ("model.threads", self.model.threads),
            ("model.max_new_tokens", self.model.max_new_tokens),
        ] {
            if value == 0 {
                return Err(format!("{key} must be above 0"));
            }
        }
        if self.features.is_empty() {
            return Err("no [features.NAME] table: a release runs at least one feature".into());
        }
        for (name, feature) in &self.features {
            plain_file_name(&format!("features.{name}.component"), &feature.component)?;
            for (key, value) in [
                ("fuel", feature.fuel),
                ("max_memory_bytes", feature.max_memory_bytes),
                ("max_input_bytes", feature.max_input_bytes),
                ("max_output_bytes", feature.max_output_bytes),
                ("max_model_calls", feature.max_model_calls.into()),
                ("max_generated_tokens", feature.max_generated_tokens.into()),
            ] {
                if value == 0 {
                    return Err(format!("features.{name}.{key} must be above 0"));
                }
            }
            self.check_descriptor(name, &feature.descriptor)?;
        }
        Ok(())
    }

    /// A feature's descriptor: well formed, named as its table, and logging only allowed names.
    fn check_descriptor(&self, key: &str, descriptor: &Descriptor) -> Result<(), String> {
        descriptor.check().map_err(|why| format!("features.{key}.descriptor: {why}"))?;
        if descriptor.name != key {
            return Err(format!(
                "features.{key}.descriptor: the feature calls itself {:?}; its table must be [features.{}]",
                descriptor.name, descriptor.name
            ));
        }
        for event in &descriptor.events {
            if !self.log.allowed_events.contains(&event.name) {
                return Err(format!(
                    "features.{key}.descriptor: event {:?} is not in log.allowed_events",
                    event.name
                ));
            }
            if let Some(field) = event.fields.iter().find(|f| !self.log_field_allowed(f)) {
                return Err(format!(
                    "features.{key}.descriptor: event {:?} carries field {field:?}, which is not in log.allowed_fields",
                    event.name
                ));
            }
        }
        Ok(())
    }

    /// The canonical release manifest: this policy as JSON with keys in a fixed order and no
    /// whitespace, so everybody computes the same digest from the same policy.
    pub fn manifest(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a policy always serializes")
    }

    pub fn manifest_digest(&self) -> Sha256 {
        Sha256::of(&self.manifest())
    }

    pub fn feature(&self, name: &str) -> Option<&FeaturePolicy> {
        self.features.get(name)
    }

    pub fn log_field_allowed(&self, field: &str) -> bool {
        self.log.allowed_fields.iter().any(|allowed| allowed == field)
    }
}

/// Artifacts are named by a bare file name: the host reads them only inside its directories.
fn plain_file_name(key: &str, name: &str) -> Result<(), String> {
    let plain = !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\']);
    if plain {
        Ok(())
    } else {
        Err(format!("{key} = {name:?} must be a plain file name, not a path"))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_backend_s_name_is_the_one_the_policy_file_uses() {
        for backend in [ModelBackend::LlamaCppCpu, ModelBackend::Scripted] {
            assert_eq!(serde_json::to_value(backend).unwrap(), backend.as_str());
        }
    }

    use super::*;

    const RELEASE: &str = include_str!("../../policies/release.toml");

    fn parse(text: &str) -> Result<ReleasePolicy, ConfigError> {
        ReleasePolicy::parse(text, Path::new("policies/test.toml"))
    }

    #[test]
    fn the_release_policy_parses() {
        let policy = parse(RELEASE).unwrap();
        assert!(policy.feature("summarize").is_some());
        assert!(policy.feature("rewrite").is_some());
        assert!(policy.log_field_allowed("outcome"));
        assert!(!policy.log_field_allowed("text"));
    }

    #[test]
    fn unknown_key_is_an_error_naming_key_and_file() {
        let text = RELEASE.replace("[host]\n", "[host]\ncolour = \"blue\"\n");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("policies/test.toml"), "{message}");
        assert!(message.contains("colour"), "{message}");
    }

    #[test]
    fn missing_key_and_bad_digest_are_named() {
        let text = RELEASE.replace("threads = 2\n", "");
        assert!(parse(&text).unwrap_err().to_string().contains("threads"));
        let text = RELEASE.replacen("sha256 = \"b179", "sha256 = \"zz79", 1);
        assert!(parse(&text).unwrap_err().to_string().contains("hex"));
    }

    #[test]
    fn paths_and_zero_limits_are_refused() {
        let text = RELEASE.replace("component = \"rewrite.wasm\"", "component = \"../rewrite.wasm\"");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("features.rewrite.component"), "{message}");
        // Every feature's fuel zeroed: the first of them (by name) is reported.
        let text = RELEASE.replace("fuel = 1_000_000_000", "fuel = 0");
        let message = parse(&text).unwrap_err().to_string();
        assert!(message.contains("features.") && message.contains(".fuel"), "{message}");
    }

    #[test]
    fn manifest_digest_follows_every_field() {
        let policy = parse(RELEASE).unwrap();
        assert_eq!(policy.manifest_digest(), parse(RELEASE).unwrap().manifest_digest());
        // Every field by name: a field added to the policy fails to compile here until it gets
        // its own change below.
        let ReleasePolicy {
            host: HostPolicy { version: _ },
            model:
                ModelPolicy {
                    name: _,
                    file: _,
                    sha256: _,
                    backend: _,
                    context_tokens: _,
                    threads: _,
                    max_new_tokens: _,
                },
            features: _,
            log: LogPolicy { allowed_fields: _, allowed_events: _ },
        } = &policy;
        type Change = Box<dyn Fn(&mut ReleasePolicy)>;
        let mut changes: Vec<(String, Change)> = vec![
            ("host.version".into(), Box::new(|p| p.host.version.push('1'))),
            ("model.name".into(), Box::new(|p| p.model.name.push('1'))),
            ("model.file".into(), Box::new(|p| p.model.file.push('1'))),
            ("model.sha256".into(), Box::new(|p| p.model.sha256.0[31] ^= 1)),
            ("model.context_tokens".into(), Box::new(|p| p.model.context_tokens += 1)),
            ("model.threads".into(), Box::new(|p| p.model.threads += 1)),
            ("model.max_new_tokens".into(), Box::new(|p| p.model.max_new_tokens += 1)),
            (
                "a feature more".into(),
                Box::new(|p| {
                    let copy = p.features["rewrite"].clone();
                    p.features.insert("rewrite-2".into(), copy);
                }),
            ),
            ("log.allowed_fields".into(), Box::new(|p| p.log.allowed_fields.push("text".into()))),
            ("log.allowed_events".into(), Box::new(|p| p.log.allowed_events.push("other".into()))),
        ];
        // Another backend, when this build knows one.
        let current = serde_json::to_value(policy.model.backend).unwrap();
        for other in ["llama-cpp-cpu", "scripted"] {
            if let Ok(backend) = serde_json::from_value::<ModelBackend>(serde_json::json!(other)) {
                if serde_json::json!(other) != current {
                    changes.push((
                        format!("model.backend = {other}"),
                        Box::new(move |p| p.model.backend = backend),
                    ));
                }
            }
        }
        assert!(policy.features.len() >= 2);
        for name in policy.features.keys() {
            let FeaturePolicy {
                component: _,
                sha256: _,
                fuel: _,
                max_memory_bytes: _,
                max_input_bytes: _,
                max_output_bytes: _,
                max_model_calls: _,
                max_generated_tokens: _,
                descriptor: _,
            } = &policy.features[name];
            let name = name.clone();
            type FieldChange = (&'static str, fn(&mut FeaturePolicy));
            let each: [FieldChange; 10] = [
                ("component", |f| f.component.push('1')),
                ("sha256", |f| f.sha256.0[0] ^= 1),
                ("fuel", |f| f.fuel += 1),
                ("max_memory_bytes", |f| f.max_memory_bytes += 1),
                ("max_input_bytes", |f| f.max_input_bytes += 1),
                ("max_output_bytes", |f| f.max_output_bytes += 1),
                ("max_model_calls", |f| f.max_model_calls += 1),
                ("max_generated_tokens", |f| f.max_generated_tokens += 1),
                ("descriptor.summary", |f| f.descriptor.summary.push('1')),
                ("descriptor.outputs", |f| f.descriptor.outputs[0].name.push('1')),
            ];
            for (field, change) in each {
                let name_here = name.clone();
                changes.push((
                    format!("features.{name}.{field}"),
                    Box::new(move |p| change(p.features.get_mut(&name_here).unwrap())),
                ));
            }
            let gone = name.clone();
            changes.push((
                format!("features.{name} removed"),
                Box::new(move |p| {
                    p.features.remove(&gone);
                }),
            ));
        }
        let mut seen = std::collections::HashSet::from([policy.manifest_digest()]);
        for (what, change) in &changes {
            let mut changed = policy.clone();
            change(&mut changed);
            assert_ne!(changed, policy, "{what}: the change changed nothing");
            assert!(seen.insert(changed.manifest_digest()), "the manifest digest does not follow {what}");
        }
        assert!(changes.len() >= 9 + 2 * 7, "every field was changed: {}", changes.len());
    }
}
