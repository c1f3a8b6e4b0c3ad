//! `describe()` at load: the component says what it is and takes, with no model and a small
//! fuel tank, and the host compares that with the descriptor the release policy records.

use super::bindings;
use super::capabilities::Budget;
use super::{new_store, LoadedFeature};
use crate::inference::TextGenerator;
use pp_vocab::feature::{Descriptor, EventSpec, OutputSpec, ParamKind, ParamSpec, PartKind, PartSpec};
use pp_vocab::log::EventLog;
use std::sync::Arc;
use wasmtime::Engine;

/// Calls the component's `describe()` in a fresh instance of its own.
pub(super) fn call(
    engine: &Engine,
    feature: &LoadedFeature,
    generator: Arc<dyn TextGenerator>,
    log: Arc<EventLog>,
) -> Result<Descriptor, String> {
    let mut store =
        new_store(engine, feature, Budget::describe(), generator, log).map_err(|e| e.to_string())?;
    store.set_fuel(super::DESCRIBE_FUEL).map_err(|e| e.to_string())?;
    let instance = feature.pre.instantiate(&mut store).map_err(|e| format!("{e:#}"))?;
    let described = instance.call_describe(&mut store).map_err(|e| format!("{e:#}"))?;
    Ok(from_wit(described))
}

/// The first difference between what the policy records and what the component said.
pub(super) fn compare(recorded: &Descriptor, described: &Descriptor) -> Result<(), String> {
    if recorded == described {
        return Ok(());
    }
    let differs = |what: &str| Err(format!("its {what} differ"));
    if recorded.name != described.name {
        return Err(format!("it calls itself {:?}", described.name));
    }
    if recorded.summary != described.summary {
        return differs("summary");
    }
    if recorded.parts != described.parts {
        return differs("parts");
    }
    if recorded.params != described.params {
        return differs("parameters");
    }
    if recorded.outputs != described.outputs {
        return differs("outputs");
    }
    differs("log events")
}

/// The descriptor as `[features.NAME.descriptor]` of a policy file (for the error that asks the
/// author to record it).
pub fn as_policy_toml(feature: &str, descriptor: &Descriptor) -> String {
    #[derive(serde::Serialize)]
    struct Wrapper<'a> {
        features: std::collections::BTreeMap<&'a str, Table<'a>>,
    }
    #[derive(serde::Serialize)]
    struct Table<'a> {
        descriptor: &'a Descriptor,
    }
    let wrapper = Wrapper { features: [(feature, Table { descriptor })].into() };
    toml::to_string(&wrapper).unwrap_or_else(|e| format!("(cannot print it: {e})"))
}

fn from_wit(d: bindings::Descriptor) -> Descriptor {
    Descriptor {
        name: d.name,
        summary: d.summary,
        parts: d
            .parts
            .into_iter()
            .map(|p| PartSpec {
                name: p.name,
                summary: p.summary,
                kind: match p.kind {
                    bindings::PartKind::Text => PartKind::Text,
                    bindings::PartKind::Messages => PartKind::Messages,
                },
                required: p.required,
            })
            .collect(),
        params: d
            .params
            .into_iter()
            .map(|p| ParamSpec {
                name: p.name,
                summary: p.summary,
                kind: match p.kind {
                    bindings::ParamKind::Flag => ParamKind::Flag,
                    bindings::ParamKind::Number(range) => {
                        ParamKind::Number { min: range.min, max: range.max }
                    }
                    bindings::ParamKind::Choice(choices) => ParamKind::Choice(choices),
                },
                required: p.required,
            })
            .collect(),
        outputs: d.outputs.into_iter().map(|o| OutputSpec { name: o.name, summary: o.summary }).collect(),
        events: d.events.into_iter().map(|e| EventSpec { name: e.name, fields: e.fields }).collect(),
    }
}

/// What a component says it is, without a policy: for `component test`, the build tool and
/// authors. Its imports are checked as at load.
pub fn describe_component(wasm: &[u8]) -> Result<Descriptor, super::LoadError> {
    use super::{LoadError, RequestState};
    let engine = super::engine(super::Allocation::OnDemand, DESCRIBE_MEMORY_BYTES)?;
    let file = std::path::Path::new("(component)");
    let invalid = |reason: String| LoadError::Invalid { file: file.into(), reason };
    let component =
        wasmtime::component::Component::new(&engine, wasm).map_err(|e| invalid(format!("{e:#}")))?;
    super::check_imports(&engine, &component, file)?;
    let mut linker = wasmtime::component::Linker::<RequestState>::new(&engine);
    bindings::Feature::add_to_linker::<RequestState, wasmtime::component::HasSelf<RequestState>>(
        &mut linker,
        |state| state,
    )
    .map_err(|e| LoadError::Engine(e.to_string()))?;
    let pre = linker.instantiate_pre(&component).map_err(|e| invalid(format!("{e:#}")))?;
    let pre = bindings::FeaturePre::new(pre).map_err(|e| invalid(format!("{e:#}")))?;
    let limits = pp_vocab::policy::FeaturePolicy {
        component: String::new(),
        sha256: pp_vocab::Sha256([0; 32]),
        fuel: super::DESCRIBE_FUEL,
        max_memory_bytes: DESCRIBE_MEMORY_BYTES,
        max_input_bytes: 1,
        max_output_bytes: 1,
        max_model_calls: 1,
        max_generated_tokens: 1,
        descriptor: Descriptor {
            name: String::new(),
            summary: String::new(),
            parts: vec![],
            params: vec![],
            outputs: vec![],
            events: vec![],
        },
    };
    let events = Arc::new(super::capabilities::EventTable::of(&limits.descriptor));
    let feature = LoadedFeature { name: "(describing)", limits, events, pre };
    let no_model = Arc::new(crate::inference::ScriptedInference::new(Vec::new(), 0));
    let log = Arc::new(EventLog::new::<&str>(&[], Box::new(pp_vocab::log::DiscardSink)));
    call(&engine, &feature, no_model, log).map_err(invalid)
}

/// Linear memory `describe()` may use when no policy says.
const DESCRIBE_MEMORY_BYTES: u64 = 64 << 20;
