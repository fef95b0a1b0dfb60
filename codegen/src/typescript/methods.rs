//! Typed method calls from a server's [`MethodSchema`]: a class per endpoint with one
//! `async` function per method (arguments encoded, the answer decoded, exceptions
//! thrown as their generated `Error` subclasses), and the `Client` that holds them.

use std::fmt::Write;

use streampod_protocol::schema::{EndpointSchema, MethodSchema, MethodSignature};

use super::{decode, doc, encode, literal, push_lines, ts_type, unsupported_type};
use crate::ir::{ModelSet, Type};
use crate::method_types::{self, camel, is_exception, pascal, Answer, Signature};

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
            Ok(signature) => emit_method(out, set, &endpoint.name, method, &signature),
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
    signature: &Signature,
) {
    let (args, answer, inputs) = (&signature.args, &signature.answer, &signature.inputs);
    out.push('\n');
    let mut docs: Vec<String> = method.docs.lines().map(str::to_owned).collect();
    if !docs.is_empty() {
        docs.push(String::new());
    }
    let what = if method.streaming {
        format!(
            "A streaming method, opened over `/v1/websocket`: iterate the call (`for await`) for its values{}",
            if inputs.is_empty() { "" } else { ", and send on `call.inputs`" }
        )
    } else {
        format!("`POST /{endpoint}/{}`", method.name)
    };
    match method_types::access(method) {
        Some(access) => docs.push(format!("{what}; {access}.")),
        None => docs.push(format!("{what}.")),
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

/// The method's types, when TypeScript covers every one of them.
fn signature(set: &ModelSet, method: &MethodSignature) -> Result<Signature, String> {
    let signature = method_types::signature(set, method)?;
    for ty in signature.types() {
        if let Some(what) = unsupported_type(ty) {
            return Err(format!("a type is {what}, which has no TypeScript yet"));
        }
    }
    Ok(signature)
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
        assert_eq!(param_name("new"), "new_");
        assert_eq!(param_name("args"), "args_");
        assert_eq!(param_name("channelId"), "channelId");
    }
}
