//! `pp` refuses before any network call when the user has not opted in, or when the chat is
//! kept on the device; its settings persist in the device's state directory.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Device {
    state: PathBuf,
    config: PathBuf,
    /// Stands where the relay and key directory would be; records whether anyone connected.
    listener: TcpListener,
}

fn device(name: &str) -> Device {
    let state = std::env::temp_dir().join(format!("pp-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = state.join("device.toml");
    let toml = format!(
        "relay_url = \"{url}/\"\nkey_urls = [\"{url}/ohttp-keys\"]\nlaunch_measurements = []\nmanifest_digests = []\n{}",
        tokens_table(&url)
    );
    std::fs::write(&config, toml).unwrap();
    Device { state, config, listener }
}

impl Device {
    fn pp(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_pp"))
            .arg("--config")
            .arg(&self.config)
            .arg("--state-dir")
            .arg(&self.state)
            .args(args)
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .output()
            .unwrap()
    }

    fn nobody_connected(&self) -> bool {
        matches!(self.listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

fn tokens_table(url: &str) -> String {
    format!(
        "[tokens]\nissuer_url = \"{url}\"\ndirectory_urls = [\"{url}/token-issuer-directory\"]\n\
         account_credential = \"unused\"\nissuer_name = \"issuer.test\"\norigin_name = \"gateway.test\"\n"
    )
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn nothing_is_sent_before_the_user_opts_in() {
    let device = device("opt-in");
    let refused = device.pp(&["summarize", "examples/picnic-chat.txt"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("pp opt-in"), "{}", stderr(&refused));
    assert!(device.nobody_connected(), "a refused request must not touch the network");
}

#[test]
fn a_chat_kept_on_the_device_is_refused_before_the_network() {
    let device = device("keep");
    assert!(device.pp(&["opt-in"]).status.success());
    assert!(device.pp(&["keep-on-device", "picnic-chat"]).status.success());
    let refused = device.pp(&["summarize", "examples/picnic-chat.txt"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("stay on this device"), "{}", stderr(&refused));
    assert!(device.nobody_connected());

    let settings = String::from_utf8(device.pp(&["settings"]).stdout).unwrap();
    assert!(settings.contains("on (opted in)") && settings.contains("picnic-chat"), "{settings}");

    // Allowed again, the request goes out: here to a port where nothing listens.
    assert!(device.pp(&["allow", "picnic-chat"]).status.success());
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let dead = format!("http://{dead}");
    let toml = format!(
        "relay_url = \"{dead}/\"\nkey_urls = [\"{dead}/ohttp-keys\"]\nlaunch_measurements = []\nmanifest_digests = []\n{}",
        tokens_table(&dead)
    );
    std::fs::write(&device.config, toml).unwrap();
    let attempted = device.pp(&["summarize", "examples/picnic-chat.txt"]);
    assert!(stderr(&attempted).contains("cannot reach the key directory"), "{}", stderr(&attempted));
}
