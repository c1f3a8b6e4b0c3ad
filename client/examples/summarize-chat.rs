//! The device library from another program: open a device with a config and a state
//! directory, opt in, summarize a chat, print the answer and what was verified.
//!
//! Run against a running stack (e.g. the one `scripts/demo` starts, whose device config is
//! `target/demo/device.toml`):
//! `cargo run -p pp-client --example summarize-chat -- target/demo/device.toml target/demo/device`

use pp_client::device::{Device, DeviceConfig};
use pp_plaintext::ChatMessage;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(config), Some(state)) = (args.next(), args.next()) else {
        return Err("usage: summarize-chat DEVICE_TOML STATE_DIR".into());
    };
    let config = DeviceConfig::load(config.as_ref())?;
    let mut device = Device::open(config, state.as_ref())?.on_progress(|line| eprintln!("  {line}"));
    device.opt_in()?;
    let chat = vec![
        ChatMessage { author: "Maya".into(), text: "Picnic on Saturday at 11 by the big oak?".into() },
        ChatMessage { author: "Sam".into(), text: "Yes! I'll bring lemonade.".into() },
    ];
    let outcome = device.summarize(Some("picnic"), chat).await?;
    println!("{}\n", outcome.response.text());
    println!("{}", outcome.receipt.explain());
    Ok(())
}
