//! A call's named arguments: parsed from a JSON body and the query, decoded by name.

use std::collections::HashMap;

use serde_json::value::RawValue;

use super::info::MethodInfo;
use super::error::MethodError;
use crate::protocol::wire::{FromWire, WireValue};


/// The named arguments of one call.
#[doc(hidden)]
#[derive(Debug)]
pub struct Args {
    values: HashMap<String, Box<RawValue>>,
    method: &'static MethodInfo,
}

impl Args {
    /// The arguments `values` of a call to `method`.
    pub fn new(values: HashMap<String, Box<RawValue>>, method: &'static MethodInfo) -> Self {
        Self { values, method }
    }

    /// Decodes and removes argument `name`; a missing `Option` argument is `None`.
    ///
    /// # Errors
    ///
    /// A 400 [`MethodError`] naming the argument.
    pub fn take<T: WireValue>(&mut self, name: &'static str) -> Result<T, MethodError> {
        match self.values.remove(name) {
            Some(raw) => serde_json::from_str::<FromWire<T>>(raw.get())
                .map(|value| value.0)
                .map_err(|e| {
                    MethodError::bad_request(format!(
                        "argument '{name}' of '{}': {e}",
                        self.method.name
                    ))
                }),
            None => T::when_absent().ok_or_else(|| {
                MethodError::bad_request(format!(
                    "missing argument '{name}' of '{}'",
                    self.method.name
                ))
            }),
        }
    }

    /// Fails if arguments the method does not take are left.
    ///
    /// # Errors
    ///
    /// A 400 [`MethodError`] naming the first unexpected argument.
    pub fn finish(self) -> Result<(), MethodError> {
        let mut extra: Vec<&String> = self.values.keys().collect();
        extra.sort();
        match extra.first() {
            None => Ok(()),
            Some(name) => Err(MethodError::bad_request(format!(
                "unexpected argument '{name}'; '{}' takes {}",
                self.method.name,
                if self.method.args.is_empty() {
                    "no arguments".to_owned()
                } else {
                    self.method.args.join(", ")
                }
            ))),
        }
    }
}

/// The named arguments of a call: the body (a JSON object, or nothing but whitespace)
/// plus `?name=value` pairs of the query (Serverpod merges them in); a query value that
/// is valid JSON is taken as JSON, anything else as a string. A query value overrides
/// a body argument of the same name, as in Serverpod.
///
/// # Errors
///
/// A 400 [`MethodError`] when the body is not a JSON object.
#[doc(hidden)]
pub fn parse_args(
    body: &[u8],
    query: Option<&str>,
) -> Result<HashMap<String, Box<RawValue>>, MethodError> {
    let mut args = if body.iter().all(u8::is_ascii_whitespace) {
        HashMap::new()
    } else {
        serde_json::from_slice(body).map_err(|e| {
            MethodError::bad_request(format!(
                "the body must be a JSON object of named arguments: {e}"
            ))
        })?
    };
    let Some(query) = query else {
        return Ok(args);
    };
    // Query parameters override body arguments of the same name, in Serverpod's order
    // (`queryParameters.addAll(uri.queryParameters)`).
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        let raw = RawValue::from_string(value.to_string())
            .ok()
            .filter(|_| serde_json::from_str::<serde::de::IgnoredAny>(&value).is_ok())
            .or_else(|| serde_json::value::to_raw_value(&value).ok());
        if let Some(raw) = raw {
            args.insert(name.into_owned(), raw);
        }
    }
    Ok(args)
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_json_or_strings() {
        let args = parse_args(
            br#"{"kept": 1}"#,
            Some("id=42&name=ann&flag=true&kept=2&list=%5B1%2C2%5D"),
        )
        .unwrap();
        let get = |name: &str| args[name].get().to_owned();
        assert_eq!(get("id"), "42");
        assert_eq!(get("name"), "\"ann\"");
        assert_eq!(get("flag"), "true");
        assert_eq!(get("kept"), "2", "the query overrides the body, as in Serverpod");
        assert_eq!(get("list"), "[1,2]");
        assert!(parse_args(b"  \n", None).unwrap().is_empty());
        assert_eq!(parse_args(b"[1]", None).unwrap_err().status(), 400);
    }
}
