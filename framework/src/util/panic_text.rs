//! The text of a caught panic, for logs and error answers.

use std::any::Any;

/// What a caught panic says: `panicked: <message>`.
pub(crate) fn panic_message(panic: &(dyn Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(text), _) => format!("panicked: {text}"),
        (_, Some(text)) => format!("panicked: {text}"),
        _ => "panicked".to_owned(),
    }
}
