//! An HTTP method call's arguments as the server reads them: the first line is the
//! query string, the rest the body; then every argument of the example's methods is
//! decoded with its type. Must never panic.
#![no_main]

use example_server::models::{SystemNotification, UserNotification};
use example_server::notification::NotificationEndpoint;
use libfuzzer_sys::fuzz_target;
use streampod::__private::{parse_args, Args};
use streampod::Methods;

fuzz_target!(|input: &[u8]| {
    let (query, body) = match input.iter().position(|b| *b == b'\n') {
        Some(at) => (std::str::from_utf8(&input[..at]).ok(), &input[at + 1..]),
        None => (None, input),
    };
    let Ok(values) = parse_args(body, query) else {
        return;
    };
    let table = <NotificationEndpoint as Methods<example_server::Protocol>>::method_table(
        &NotificationEndpoint,
    );
    for method in table {
        let mut args = Args::new(values.clone(), method);
        let _ = args.take::<i64>("targetUserId");
        let _ = args.take::<i64>("userId");
        let _ = args.take::<String>("message");
        let _ = args.take::<Option<String>>("note");
        let _ = args.take::<SystemNotification>("notification");
        let _ = args.take::<UserNotification>("notification");
        let _ = args.finish();
    }
});
