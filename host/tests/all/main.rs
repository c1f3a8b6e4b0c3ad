//! The host's integration tests, as one binary (one link, one model load per run).
//!
//! They need the built components (`scripts/build-components`) and, for the model tests, the
//! model (`scripts/fetch-model`); `scripts/test` does both first.

mod authoring;
mod batching;
mod binaries;
mod common;
mod components;
mod contract;
mod injection;
mod model;
mod quality;
mod sandbox;
mod session;
