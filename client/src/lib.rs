//! The device side of Private Processing. [`device::Device`] is the one object an app needs
//! (configure, opt in, list and run features, receipts); the modules below are its parts.
//!
//! - [`features`]: typed helpers for the features this project ships (`summarize`, `rewrite`);
//!   any other feature runs through [`device::Device::run`];
//! - [`transport`]: fetch the gateway's keys (the same bytes from every key directory mirror, or
//!   an error), then send binary-HTTP requests encapsulated with Oblivious HTTP through the relay;
//! - [`settings`]: the user's opt-in and the chats kept on the device, checked before any
//!   network call;
//! - [`tokens`]: Privacy Pass tokens, issued in batches for the account, kept on the device,
//!   one spent per session;
//! - [`ledger`]: the releases the device may trust, proven in the transparency ledger under a
//!   checkpoint cosigned by a quorum of witnesses and consistent with what it saw before;
//! - [`audit`]: an outsider's audit of a ledger entry against a source tree and its rebuild;
//! - [`receipts`]: what was verified for each request, kept on the device;
//! - [`session`]: attested TLS sessions with a host over that transport: evidence checked before
//!   any request byte is sent.

#![forbid(unsafe_code)]

pub mod audit;
pub mod device;
pub mod features;
pub mod ledger;
pub mod mirrors;
pub mod receipts;
pub mod session;
pub mod settings;
pub mod tokens;
pub mod transport;
