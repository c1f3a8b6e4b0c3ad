//! Binary HTTP (RFC 9292) as the gateway reads the inner request and the device the answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = bhttp::Message::read_bhttp(&mut std::io::Cursor::new(data)) {
        let _ = message.control().method();
        let _ = message.control().path();
        let _ = message.header().get(b"authorization");
        let mut out = Vec::new();
        let _ = message.write_bhttp(bhttp::Mode::KnownLength, &mut out);
    }
});
