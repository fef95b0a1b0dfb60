//! A method schema's signatures resolved against the models: what the TypeScript and
//! the Rust typed calls are generated from.

use streampod_protocol::schema::MethodSignature;

use crate::ir::{ModelKind, ModelSet, Record, Scalar, Type};
use crate::types::{self, TypeExpr, TypeKind};

/// A method's answer: a value, nothing (`void`), or a stream of values.
pub(crate) enum Answer {
    Value(Type),
    Void,
    Stream(Type),
}

/// One method's types.
pub(crate) struct Signature {
    /// The argument types, in the schema's order.
    pub(crate) args: Vec<Type>,
    pub(crate) answer: Answer,
    /// A streaming method's input streams: names, item types and the class names their
    /// values are sent with.
    pub(crate) inputs: Vec<(String, Type, String)>,
}

impl Signature {
    /// Every type the signature names.
    pub(crate) fn types(&self) -> impl Iterator<Item = &Type> {
        let answer = match &self.answer {
            Answer::Value(ty) | Answer::Stream(ty) => Some(ty),
            Answer::Void => None,
        };
        self.args
            .iter()
            .chain(self.inputs.iter().map(|(_, ty, _)| ty))
            .chain(answer)
    }
}

/// The argument types, the answer and the input streams of `method`, resolved against
/// the models; the problem, naming the argument, when a type is unknown.
pub(crate) fn signature(set: &ModelSet, method: &MethodSignature) -> Result<Signature, String> {
    let mut args = Vec::with_capacity(method.args.len());
    for arg in &method.args {
        let ty = resolve_text(set, &arg.ty).map_err(|e| format!("argument {}: {e}", arg.name))?;
        args.push(ty);
    }
    let mut inputs = Vec::with_capacity(method.input_streams.len());
    for input in &method.input_streams {
        let ty = resolve_text(set, &input.ty)
            .map_err(|e| format!("input stream {}: {e}", input.name))?;
        let class = input.ty.trim_end_matches('?').to_owned();
        inputs.push((input.name.clone(), ty, class));
    }
    let answer = if method.returns == "void" {
        Answer::Void
    } else if let Some(item) = method
        .returns
        .strip_prefix("Stream<")
        .and_then(|rest| rest.strip_suffix('>'))
    {
        Answer::Stream(resolve_text(set, item).map_err(|e| format!("answer: {e}"))?)
    } else {
        Answer::Value(resolve_text(set, &method.returns).map_err(|e| format!("answer: {e}"))?)
    };
    Ok(Signature {
        args,
        answer,
        inputs,
    })
}

fn resolve_text(set: &ModelSet, text: &str) -> Result<Type, String> {
    let expr =
        types::parse(text).map_err(|e| format!("type '{text}' does not parse: {}", e.message))?;
    resolve(set, &expr)
}

fn resolve(set: &ModelSet, expr: &TypeExpr) -> Result<Type, String> {
    let ty = match &expr.kind {
        // Dart's `dynamic` includes null, as in the models.
        TypeKind::Named(name) if name == "dynamic" => {
            return Ok(Type::Option(Box::new(Type::Scalar(Scalar::Dynamic))))
        }
        TypeKind::Named(name) => {
            if let Some(scalar) = Scalar::from_name(name) {
                Type::Scalar(scalar)
            } else if set.families.iter().any(|f| &f.name == name) {
                // As in Dart: a value of a class with descendants may be any of them.
                Type::Family(name.clone())
            } else if set.models.iter().any(|m| &m.name == name) {
                Type::Model(name.clone())
            } else if set.enums.iter().any(|e| &e.name == name) {
                Type::Enum(name.clone())
            } else {
                return Err(format!(
                    "'{name}' is no model, enum or Serverpod type of these model files"
                ));
            }
        }
        TypeKind::List(inner) => Type::List(Box::new(resolve(set, inner)?)),
        TypeKind::Set(inner) => Type::Set(Box::new(resolve(set, inner)?)),
        TypeKind::Map(key, value) => {
            Type::Map(Box::new(resolve(set, key)?), Box::new(resolve(set, value)?))
        }
        TypeKind::Vector(name, _) => match Scalar::vector(name) {
            Some(scalar) => Type::Scalar(scalar),
            None => return Err(format!("'{name}' is no pgvector type")),
        },
        TypeKind::Record { positional, named } => {
            let mut record = Record {
                positional: Vec::with_capacity(positional.len()),
                named: Vec::with_capacity(named.len()),
                struct_name: None,
            };
            for (index, (_, expr)) in positional.iter().enumerate() {
                record
                    .positional
                    .push((format!("p{}", index + 1), resolve(set, expr)?));
            }
            for (name, expr) in named {
                record
                    .named
                    .push((name.clone(), name.clone(), resolve(set, expr)?));
            }
            Type::Record(Box::new(record))
        }
        TypeKind::Module { name, .. } | TypeKind::Package { name, .. } => {
            return Err(format!(
                "'{name}' is another package's model, which method signatures cannot name yet"
            ))
        }
    };
    Ok(if expr.nullable && !matches!(ty, Type::Option(_)) {
        Type::Option(Box::new(ty))
    } else {
        ty
    })
}

/// What a caller needs, for generated doc comments: `needs a key with the scopes admin`,
/// `needs a signed-in key`, or nothing.
pub(crate) fn access(method: &MethodSignature) -> Option<String> {
    if !method.scopes.is_empty() {
        Some(format!(
            "needs a key with the scopes {}",
            method.scopes.join(", ")
        ))
    } else if method.require_login {
        Some("needs a signed-in key".to_owned())
    } else {
        None
    }
}

pub(crate) fn is_exception(set: &ModelSet, class: &str) -> bool {
    set.models
        .iter()
        .any(|m| m.name == class && m.kind == ModelKind::Exception)
}

/// `serverpod_auth.status` → `ServerpodAuthStatus`.
pub(crate) fn pascal(name: &str) -> String {
    name.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

/// `serverpod_auth.status` → `serverpodAuthStatus`.
pub(crate) fn camel(name: &str) -> String {
    let pascal = pascal(name);
    let mut chars = pascal.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_lowercase().to_string() + chars.as_str()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers() {
        assert_eq!(pascal("serverpod_auth.status"), "ServerpodAuthStatus");
        assert_eq!(camel("chat"), "chat");
        assert_eq!(camel("serverpod_auth.status"), "serverpodAuthStatus");
    }
}
