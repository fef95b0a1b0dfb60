//! Typed method calls from a server's [`MethodSchema`]: a class per endpoint with one
//! `async` function per method (arguments encoded, the answer decoded, exceptions
//! thrown as their generated `Error` subclasses), and the `Client` that holds them.

use std::fmt::Write;

use streampod_protocol::schema::{EndpointSchema, MethodSchema, MethodSignature};

use super::{decode, doc, encode, literal, push_lines, ts_type, unsupported_type};
use crate::ir::{ModelKind, ModelSet, Record, Scalar, Type};
use crate::types::{self, TypeExpr, TypeKind};

/// Members of the runtime's client an endpoint property must not hide.
const CLIENT_MEMBERS: [&str; 13] = [
    "state",
    "connect",
    "close",
    "send",
    "setAuthKey",
    "on",
    "onMessage",
    "onError",
    "onState",
    "onOpen",
    "onJoined",
    "position",
    "call",
];

/// A method's answer: a value, nothing (`void`), or a stream of values.
enum Answer {
    Value(Type),
    Void,
    Stream(Type),
}

/// What a streaming method's signature adds: its input streams' names, item types and
/// the class names their values are sent with.
struct Inputs(Vec<(String, Type, String)>);

/// Appends the endpoint classes and the `Client`; problems (types the schema names that
/// the models do not define or TypeScript does not cover) are pushed, naming the method.
pub(crate) fn emit(
    out: &mut String,
    set: &ModelSet,
    schema: &MethodSchema,
    problems: &mut Vec<String>,
) {
    let streaming = schema
        .endpoints
        .iter()
        .flat_map(|e| &e.methods)
        .filter(|m| m.streaming);
    let with_inputs = streaming.clone().any(|m| !m.input_streams.is_empty());
    if streaming.count() > 0 {
        let mut names = vec!["type MethodStreamCall"];
        if with_inputs {
            names.extend(["type InputSink", "type WrappedValue"]);
        }
        let _ = writeln!(
            out,
            "import {{ {} }} from \"./streampod.js\";\n",
            names.join(", ")
        );
    }
    let mut clients = Vec::new();
    for endpoint in &schema.endpoints {
        let class = format!("{}Methods", pascal(&endpoint.name));
        if set.models.iter().any(|m| m.name == class) || set.enums.iter().any(|e| e.name == class) {
            problems.push(format!(
                "endpoint {}: its methods' class {class} has the name of a model",
                endpoint.name
            ));
            continue;
        }
        emit_endpoint(out, set, endpoint, &class, problems);
        let mut property = camel(&endpoint.name);
        if CLIENT_MEMBERS.contains(&property.as_str()) {
            property.push_str("Endpoint");
        }
        clients.push((property, class, endpoint.name.clone()));
    }
    let mut lines = vec![
        "/** A client of the server: one socket for streams, and each endpoint's methods. */"
            .to_owned(),
        "export class Client extends StreampodClient<Protocol> {".to_owned(),
    ];
    for (property, class, name) in &clients {
        lines.push(format!("  /** The HTTP methods of `{name}`. */"));
        lines.push(format!("  readonly {property}: {class};"));
    }
    lines.push(String::new());
    lines.push("  constructor(options: ClientOptions) {".to_owned());
    lines.push("    super(protocolCodec, options);".to_owned());
    for (property, class, _) in &clients {
        lines.push(format!("    this.{property} = new {class}(this);"));
    }
    lines.push("  }".to_owned());
    lines.push("}".to_owned());
    push_lines(out, &lines);
}

fn emit_endpoint(
    out: &mut String,
    set: &ModelSet,
    endpoint: &EndpointSchema,
    class: &str,
    problems: &mut Vec<String>,
) {
    let _ = writeln!(
        out,
        "/** Typed calls of the `{}` endpoint's HTTP methods. */",
        endpoint.name
    );
    let _ = writeln!(out, "export class {class} {{");
    let _ = writeln!(
        out,
        "  constructor(private readonly client: StreampodClient<Protocol>) {{}}"
    );
    for method in &endpoint.methods {
        let at = format!("{}.{}", endpoint.name, method.name);
        match signature(set, method) {
            Ok((args, answer, inputs)) => {
                emit_method(out, set, &endpoint.name, method, &args, &answer, &inputs);
            }
            Err(problem) => problems.push(format!("{at}: {problem}")),
        }
    }
    let _ = writeln!(out, "}}\n");
}

fn emit_method(
    out: &mut String,
    set: &ModelSet,
    endpoint: &str,
    method: &MethodSignature,
    args: &[Type],
    answer: &Answer,
    inputs: &Inputs,
) {
    out.push('\n');
    let mut docs: Vec<String> = method.docs.lines().map(str::to_owned).collect();
    if !docs.is_empty() {
        docs.push(String::new());
    }
    if method.streaming {
        docs.push(format!(
            "A streaming method, opened over `/v1/websocket`: iterate the call (`for await`) for its values{}.",
            if inputs.0.is_empty() { "" } else { ", and send on `call.inputs`" }
        ));
    } else {
        docs.push(format!("`POST /{endpoint}/{}`.", method.name));
    }
    if method.require_login {
        docs.push("Needs a signed-in key.".to_owned());
    }
    if !method.scopes.is_empty() {
        docs.push(format!("Needs the scopes {}.", method.scopes.join(", ")));
    }
    for exception in &method.exceptions {
        if is_exception(set, exception) {
            docs.push(format!(
                "@throws {{{exception}Error}} when the method throws `{exception}`."
            ));
        }
    }
    if method.streaming {
        docs.push("@throws {StreamCallRefused} when the server refuses to open the call (its open result).".to_owned());
        docs.push(
            "@throws {StreamCallError} from the iteration when the call fails otherwise."
                .to_owned(),
        );
    } else {
        docs.push(
            "@throws {MethodCallError} on any other failure (status and message).".to_owned(),
        );
    }
    doc(out, "  ", &docs);
    // Nullable arguments at the end may be left out; one before a required one may not.
    let optional_from = args
        .iter()
        .rposition(|ty| !matches!(ty, Type::Option(_)))
        .map_or(0, |last_required| last_required + 1);
    let params: Vec<String> = method
        .args
        .iter()
        .zip(args)
        .enumerate()
        .map(|(index, (arg, ty))| {
            let default = if index >= optional_from {
                " = null"
            } else {
                ""
            };
            format!("{}: {}{default}", param_name(&arg.name), ts_type(ty))
        })
        .collect();
    let value_type = match answer {
        Answer::Value(ty) | Answer::Stream(ty) => ts_type(ty),
        Answer::Void => "void".to_owned(),
    };
    let returns = if method.streaming {
        let sinks: Vec<String> = inputs
            .0
            .iter()
            .map(|(name, ty, _)| format!("{}: InputSink<{}>", literal(name), ts_type(ty)))
            .collect();
        let sinks = if sinks.is_empty() {
            "{}".to_owned()
        } else {
            format!("{{ {} }}", sinks.join("; "))
        };
        format!("MethodStreamCall<{value_type}, {sinks}>")
    } else {
        value_type
    };
    let _ = writeln!(
        out,
        "  async {}({}): Promise<{returns}> {{",
        param_name(&method.name),
        params.join(", ")
    );
    let _ = writeln!(out, "    const args: {{ [name: string]: unknown }} = {{}};");
    for (arg, ty) in method.args.iter().zip(args) {
        let name = param_name(&arg.name);
        let key = literal(&arg.name);
        match ty {
            Type::Option(inner) => {
                let _ = writeln!(
                    out,
                    "    if ({name} !== null) args[{key}] = {};",
                    encode(inner, &name)
                );
            }
            _ => {
                let _ = writeln!(out, "    args[{key}] = {};", encode(ty, &name));
            }
        }
    }
    if method.streaming {
        let path = literal(&format!("{endpoint}.{}", method.name));
        let decoder = match answer {
            Answer::Value(ty) | Answer::Stream(ty) => decode(ty, "json", &path),
            Answer::Void => "undefined".to_owned(),
        };
        let encoders: Vec<String> = inputs
            .0
            .iter()
            .map(|(name, ty, class)| {
                let wrapped = match ty {
                    Type::Option(inner) => format!(
                        "value === null ? {{ className: \"null\", data: null }} : {{ className: {}, data: {} }}",
                        literal(class),
                        encode(inner, "value")
                    ),
                    _ => format!(
                        "{{ className: {}, data: {} }}",
                        literal(class),
                        encode(ty, "value")
                    ),
                };
                format!(
                    "{}: (value: {}): WrappedValue => ({wrapped})",
                    literal(name),
                    ts_type(ty)
                )
            })
            .collect();
        let encoders = if encoders.is_empty() {
            "{}".to_owned()
        } else {
            format!("{{ {} }}", encoders.join(", "))
        };
        let _ = writeln!(
            out,
            "    return this.client.openStream({}, {}, args, {encoders}, (json: unknown) => {decoder});",
            literal(endpoint),
            literal(&method.name),
        );
        let _ = writeln!(out, "  }}");
        return;
    }
    let call = format!(
        "await this.client.call({}, {}, args)",
        literal(endpoint),
        literal(&method.name)
    );
    match answer {
        Answer::Void => {
            let _ = writeln!(out, "    {call};");
        }
        Answer::Value(ty) | Answer::Stream(ty) => {
            let _ = writeln!(out, "    const json = {call};");
            let path = literal(&format!("{endpoint}.{}", method.name));
            let _ = writeln!(out, "    return {};", decode(ty, "json", &path));
        }
    }
    let _ = writeln!(out, "  }}");
}

/// The argument types, the answer and the input streams of `method`, resolved against
/// the models.
fn signature(
    set: &ModelSet,
    method: &MethodSignature,
) -> Result<(Vec<Type>, Answer, Inputs), String> {
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
    Ok((args, answer, Inputs(inputs)))
}

fn resolve_text(set: &ModelSet, text: &str) -> Result<Type, String> {
    let expr =
        types::parse(text).map_err(|e| format!("type '{text}' does not parse: {}", e.message))?;
    let ty = resolve(set, &expr)?;
    match unsupported_type(&ty) {
        Some(what) => Err(format!(
            "type '{text}' is {what}, which has no TypeScript yet"
        )),
        None => Ok(ty),
    }
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
                "'{name}' is another package's model, which has no TypeScript yet"
            ))
        }
    };
    Ok(if expr.nullable && !matches!(ty, Type::Option(_)) {
        Type::Option(Box::new(ty))
    } else {
        ty
    })
}

fn is_exception(set: &ModelSet, class: &str) -> bool {
    set.models
        .iter()
        .any(|m| m.name == class && m.kind == ModelKind::Exception)
}

/// `serverpod_auth.status` → `ServerpodAuthStatus`.
fn pascal(name: &str) -> String {
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
fn camel(name: &str) -> String {
    let pascal = pascal(name);
    let mut chars = pascal.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_ascii_lowercase().to_string() + chars.as_str()
    })
}

/// A TypeScript identifier for a wire name (reserved words get a trailing `_`).
fn param_name(name: &str) -> String {
    // Keywords a wire name could be, and the generated function's own locals.
    const RESERVED: [&str; 13] = [
        "break", "case", "class", "default", "delete", "function", "new", "return", "switch",
        "this", "var", "args", "json",
    ];
    let mut ident: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '$' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if ident.starts_with(|c: char| c.is_ascii_digit()) || RESERVED.contains(&ident.as_str()) {
        ident.push('_');
    }
    ident
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_identifiers() {
        assert_eq!(pascal("serverpod_auth.status"), "ServerpodAuthStatus");
        assert_eq!(camel("chat"), "chat");
        assert_eq!(camel("serverpod_auth.status"), "serverpodAuthStatus");
        assert_eq!(param_name("new"), "new_");
        assert_eq!(param_name("args"), "args_");
        assert_eq!(param_name("channelId"), "channelId");
    }
}
