//! A `/v1/websocket` text frame as the server reads it: `MethodStreamFrame::parse`, then
//! the frame written back in the key form it came in and parsed again, which must give
//! the same frame. Must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streampod::protocol::method_stream::MethodStreamFrame;

fuzz_target!(|text: &str| {
    if let Ok((frame, form)) = MethodStreamFrame::parse(text) {
        let written = frame.to_json(form);
        let (again, again_form) =
            MethodStreamFrame::parse(&written).expect("a written frame parses");
        assert_eq!(again_form, form);
        assert_eq!(again.to_json(form), written);
    }
});
