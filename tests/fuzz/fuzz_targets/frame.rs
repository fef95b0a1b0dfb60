//! A client's text frame as the server reads it: `Frame::parse`, then the example's
//! `Protocol` decode of every message it carries. Must never panic.
#![no_main]

use example_server::Protocol;
use libfuzzer_sys::fuzz_target;
use streampod::protocol::frame::Frame;
use streampod::ModelSet;

fuzz_target!(|text: &str| {
    if let Ok(frame) = Frame::parse(text) {
        let _ = frame.to_json();
        for message in frame.into_messages() {
            if let Ok(decoded) = Protocol::decode(&message.class_name, message.data) {
                let mut out = Vec::new();
                let _ = decoded.encode_data(&mut out);
            }
        }
    }
});
