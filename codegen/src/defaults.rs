//! `default=` values: parsed and checked against the field's type at generation time.

use streampod_protocol::datetime;
use streampod_protocol::types::Uri;

use crate::ir::Scalar;

/// A default value, checked against its type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum DefaultValue {
    Bool(bool),
    Int(i64),
    Double(f64),
    String(String),
    /// `now`: the time the value is decoded.
    Now,
    /// A fixed time, as microseconds since the epoch.
    DateTime(i64),
    /// Milliseconds.
    Duration(i64),
    /// `random` (v4) or `random_v7`.
    RandomUuid {
        v7: bool,
    },
    Uuid(u128),
    Uri(String),
    BigInt(String),
    /// A value of an enum, by its YAML name.
    EnumValue(String),
}

/// Parses `text` as a default of `scalar`.
pub(crate) fn parse_scalar(scalar: Scalar, text: &str) -> Result<DefaultValue, String> {
    let text = text.trim();
    match scalar {
        Scalar::Bool => match text {
            "true" => Ok(DefaultValue::Bool(true)),
            "false" => Ok(DefaultValue::Bool(false)),
            _ => Err(format!("'{text}' is not a bool default; use true or false")),
        },
        Scalar::Int => text
            .parse()
            .map(DefaultValue::Int)
            .map_err(|_| format!("'{text}' is not an int default")),
        Scalar::Double => text
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .map(DefaultValue::Double)
            .ok_or_else(|| format!("'{text}' is not a double default")),
        Scalar::String => unquote(text)
            .map(|s| DefaultValue::String(s.to_owned()))
            .ok_or_else(|| format!("String defaults are quoted: default='{text}'")),
        Scalar::DateTime => {
            if text == "now" {
                return Ok(DefaultValue::Now);
            }
            let literal = unquote(text).unwrap_or(text);
            datetime::parse(literal)
                .map(|t| DefaultValue::DateTime(t.timestamp_micros()))
                .map_err(|e| format!("{e}; or use 'now'"))
        }
        Scalar::Duration => parse_duration(text).map(DefaultValue::Duration),
        Scalar::Uuid => {
            match text {
                "random" => Ok(DefaultValue::RandomUuid { v7: false }),
                "random_v7" => Ok(DefaultValue::RandomUuid { v7: true }),
                _ => {
                    let literal = unquote(text).ok_or_else(|| {
                    format!("UuidValue defaults are random, random_v7 or a quoted UUID, not '{text}'")
                })?;
                    uuid::Uuid::parse_str(literal)
                        .map(|u| DefaultValue::Uuid(u.as_u128()))
                        .map_err(|e| format!("invalid UUID '{literal}': {e}"))
                }
            }
        }
        Scalar::Uri => {
            let literal = unquote(text)
                .ok_or_else(|| format!("Uri defaults are quoted: default='{text}'"))?;
            Uri::parse(literal)
                .map(|_| DefaultValue::Uri(literal.to_owned()))
                .map_err(|e| e.to_string())
        }
        Scalar::BigInt => {
            // Quoted or not: Serverpod reads the raw text, which may exceed any int.
            let literal = unquote(text).unwrap_or(text);
            literal
                .parse::<num_bigint::BigInt>()
                .map(|_| DefaultValue::BigInt(literal.to_owned()))
                .map_err(|_| format!("'{literal}' is not a BigInt"))
        }
        Scalar::ByteData
        | Scalar::Vector
        | Scalar::HalfVector
        | Scalar::SparseVector
        | Scalar::Bit
        | Scalar::Dynamic => Err(format!("{scalar:?} fields cannot have a default")),
    }
}

/// `'text'` or `"text"` without the quotes.
fn unquote(text: &str) -> Option<&str> {
    let quoted = text.len() >= 2
        && ((text.starts_with('\'') && text.ends_with('\''))
            || (text.starts_with('"') && text.ends_with('"')));
    quoted.then(|| &text[1..text.len() - 1])
}

/// Serverpod's duration syntax, `1d 2h 10min 30s 100ms`, in milliseconds.
fn parse_duration(text: &str) -> Result<i64, String> {
    let fail =
        || format!("'{text}' is not a Duration default; write it like 1d 2h 10min 30s 100ms");
    let literal = unquote(text).unwrap_or(text);
    let (negative, body) = match literal.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, literal),
    };
    let mut total: i64 = 0;
    let mut parts = 0;
    for part in body.split_whitespace() {
        let digits = part.find(|c: char| !c.is_ascii_digit()).ok_or_else(fail)?;
        let amount: i64 = part[..digits].parse().map_err(|_| fail())?;
        let unit = match &part[digits..] {
            "d" => 86_400_000,
            "h" => 3_600_000,
            "min" => 60_000,
            "s" => 1_000,
            "ms" => 1,
            _ => return Err(fail()),
        };
        total = amount
            .checked_mul(unit)
            .and_then(|ms| total.checked_add(ms))
            .ok_or_else(fail)?;
        parts += 1;
    }
    if parts == 0 {
        return Err(fail());
    }
    Ok(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_scalar_form() {
        assert_eq!(
            parse_scalar(Scalar::Bool, "true"),
            Ok(DefaultValue::Bool(true))
        );
        assert_eq!(parse_scalar(Scalar::Int, "-5"), Ok(DefaultValue::Int(-5)));
        assert_eq!(
            parse_scalar(Scalar::Double, "2.5"),
            Ok(DefaultValue::Double(2.5))
        );
        assert_eq!(
            parse_scalar(Scalar::String, "'a, b'"),
            Ok(DefaultValue::String("a, b".into()))
        );
        assert_eq!(parse_scalar(Scalar::DateTime, "now"), Ok(DefaultValue::Now));
        assert_eq!(
            parse_scalar(Scalar::DateTime, "1970-01-01T00:00:01.000Z"),
            Ok(DefaultValue::DateTime(1_000_000))
        );
        assert_eq!(
            parse_scalar(Scalar::Duration, "1d 2h 10min 30s 100ms"),
            Ok(DefaultValue::Duration(94_230_100))
        );
        assert_eq!(
            parse_scalar(Scalar::Uuid, "random_v7"),
            Ok(DefaultValue::RandomUuid { v7: true })
        );
        assert!(matches!(
            parse_scalar(Scalar::Uuid, "'550e8400-e29b-41d4-a716-446655440000'"),
            Ok(DefaultValue::Uuid(_))
        ));
        assert!(parse_scalar(Scalar::Uri, "'https://a.b/'").is_ok());
        assert!(parse_scalar(Scalar::BigInt, "'-12345678901234567890'").is_ok());
        assert_eq!(
            parse_scalar(Scalar::BigInt, "-1234567890123456789099999999"),
            Ok(DefaultValue::BigInt("-1234567890123456789099999999".into()))
        );
    }

    #[test]
    fn rejects_with_the_fix() {
        let message = |scalar, text| parse_scalar(scalar, text).unwrap_err();
        assert!(message(Scalar::String, "hello").contains("quoted"));
        assert!(message(Scalar::Bool, "yes").contains("true or false"));
        assert!(message(Scalar::Int, "1.5").contains("not an int"));
        assert!(message(Scalar::Duration, "5 minutes").contains("1d 2h"));
        assert!(message(Scalar::DateTime, "tomorrow").contains("now"));
        assert!(message(Scalar::Uri, "'not a uri'").contains("invalid URI"));
        assert!(message(Scalar::ByteData, "'x'").contains("cannot"));
    }
}
