//! The Private Processing host: the only code, with its feature components and model, that sees
//! a request's plaintext. It runs inside the confidential VM.
//!
//! - [`sandbox`]: runs each request in a fresh, limited instance of the feature's component;
//! - [`inference`]: the text-generation trait behind the components' `inference` import, and
//!   [`llama`], its llama.cpp implementation for GGUF models;
//! - [`artifacts`]: the one directory the host reads, every file checked against the policy;
//! - [`session`]: attested TLS sessions with devices, and [`serve`], their HTTP endpoints;
//! - [`launch`]: what the two binaries (`pp-host`, attested, and `pp-host-dev`, developer
//!   tools) do to start serving: measure, refuse the environment llama.cpp reads, load, serve.
//!
//! Its log is [`pp_vocab::log`]: allow-listed fields, never text.

#![forbid(unsafe_code)]

pub mod artifacts;
pub mod inference;
pub mod launch;
#[cfg(feature = "llama")]
pub mod llama;
pub mod sandbox;
pub mod serve;
pub mod session;
