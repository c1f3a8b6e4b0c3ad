//! The device side of Private Processing.
//!
//! - [`transport`]: fetch the gateway's keys (the same bytes from every key directory mirror, or
//!   an error), then send binary-HTTP requests encapsulated with Oblivious HTTP through the relay.

#![forbid(unsafe_code)]

pub mod transport;
