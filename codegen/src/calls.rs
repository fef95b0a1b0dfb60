//! Typed Rust calls of a server's methods, from its [`MethodSchema`]: a struct per
//! endpoint with one `async fn` per method (arguments encoded, the answer decoded, the
//! exception typed), and a `MethodCalls` trait that reaches them from any client.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use streampod_protocol::schema::{EndpointSchema, MethodSchema, MethodSignature};

use crate::expand::rust_type;
use crate::ir::{ModelSet, Scalar, Type};
use crate::method_types::{self, is_exception, pascal, Answer, Signature};
use crate::validate::rust_field_name;

/// Methods a `MethodCalls` accessor must not share a name with: the clients' own
/// (inherent methods would win silently) and the trait's.
const CLIENT_METHODS: [&str; 17] = [
    "as_method_client",
    "builder",
    "call",
    "call_stream",
    "call_timeout",
    "clone",
    "close",
    "connect",
    "fmt",
    "last_close",
    "max_answer_bytes",
    "max_stream_queue_bytes",
    "method_client",
    "new",
    "recv",
    "send",
    "state",
];

/// The calls' tokens; problems (types the models do not define, names that clash) are
/// pushed, naming the method.
pub(crate) fn calls(
    set: &ModelSet,
    rt: &syn::Path,
    schema: &MethodSchema,
    problems: &mut Vec<String>,
) -> TokenStream {
    let client = client_path(rt);
    let mut accessors = Vec::new();
    let mut structs = Vec::new();
    for endpoint in &schema.endpoints {
        let name = format!("{}Calls", pascal(&endpoint.name));
        if set.models.iter().any(|m| m.name == name) || set.enums.iter().any(|e| e.name == name) {
            problems.push(format!(
                "endpoint {}: its calls' struct {name} has the name of a model",
                endpoint.name
            ));
            continue;
        }
        let mut accessor = rust_field_name(&endpoint.name.replace('.', "_"));
        if CLIENT_METHODS.contains(&accessor.as_str()) {
            accessor.push_str("_endpoint");
        }
        let (accessor, ident) = (format_ident_raw(&accessor), format_ident!("{}", name));
        let doc = format!(" The `{}` endpoint's methods.", endpoint.name);
        accessors.push((doc.clone(), accessor, ident.clone()));
        structs.push(endpoint_calls(set, rt, &client, endpoint, &ident, problems));
    }
    let declared = accessors.iter().map(|(doc, accessor, ident)| {
        quote! {
            #[doc = #doc]
            fn #accessor(&self) -> #ident<'_>;
        }
    });
    let implemented = accessors.iter().map(|(_, accessor, ident)| {
        quote! {
            fn #accessor(&self) -> #ident<'_> {
                #ident { client: #client::AsMethodClient::as_method_client(self) }
            }
        }
    });
    quote! {
        /// Typed calls of the server's methods: with this trait in scope, a
        /// `streampod::client::Client` or `MethodClient` reaches each endpoint's methods
        /// as `client.<endpoint>().<method>(…)`.
        pub trait MethodCalls {
            #(#declared)*
        }

        impl<C: #client::AsMethodClient + ?::core::marker::Sized> MethodCalls for C {
            #(#implemented)*
        }

        #(#structs)*
    }
}

/// `::streampod::__codegen` → `::streampod::client`.
fn client_path(rt: &syn::Path) -> TokenStream {
    let mut path = rt.clone();
    path.segments.pop();
    let segments = path.segments.pairs().map(|pair| pair.value().ident.clone());
    let leading = path.leading_colon.map(|_| quote!(::));
    quote!(#leading #(#segments ::)* client)
}

/// An identifier from a name `rust_field_name` made (`r#type` stays raw).
fn format_ident_raw(name: &str) -> syn::Ident {
    match name.strip_prefix("r#") {
        Some(raw) => syn::Ident::new_raw(raw, proc_macro2::Span::call_site()),
        None => format_ident!("{}", name),
    }
}

fn endpoint_calls(
    set: &ModelSet,
    rt: &syn::Path,
    client: &TokenStream,
    endpoint: &EndpointSchema,
    ident: &syn::Ident,
    problems: &mut Vec<String>,
) -> TokenStream {
    let mut methods = Vec::new();
    for method in &endpoint.methods {
        match typed(set, method) {
            Ok(signature) => methods.push(method_call(
                set,
                rt,
                client,
                &endpoint.name,
                method,
                &signature,
            )),
            Err(problem) => problems.push(format!("{}.{}: {problem}", endpoint.name, method.name)),
        }
    }
    let doc = format!(
        " Typed calls of the `{}` endpoint's methods.",
        endpoint.name
    );
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, Copy)]
        pub struct #ident<'a> {
            client: &'a #client::MethodClient,
        }

        impl #ident<'_> {
            #(#methods)*
        }
    }
}

/// The method's types, when a Rust call can name every one of them.
fn typed(set: &ModelSet, method: &MethodSignature) -> Result<Signature, String> {
    let signature = method_types::signature(set, method)?;
    if signature.types().any(has_named_record) {
        return Err("a record with named fields has no Rust call yet".to_owned());
    }
    if method.exceptions.len() > 1 {
        return Err("a Rust call takes one exception type".to_owned());
    }
    Ok(signature)
}

fn has_named_record(ty: &Type) -> bool {
    match ty {
        Type::Record(record) => {
            !record.named.is_empty() || record.positional.iter().any(|(_, ty)| has_named_record(ty))
        }
        Type::List(inner) | Type::Set(inner) | Type::Option(inner) => has_named_record(inner),
        Type::Map(key, value) => has_named_record(key) || has_named_record(value),
        _ => false,
    }
}

fn method_call(
    set: &ModelSet,
    rt: &syn::Path,
    client: &TokenStream,
    endpoint: &str,
    method: &MethodSignature,
    signature: &Signature,
) -> TokenStream {
    let name = format_ident_raw(&rust_field_name(&method.name));
    let exception = match method.exceptions.first() {
        Some(class) if is_exception(set, class) => {
            let class = format_ident!("{}", class);
            quote!(#class)
        }
        _ => quote!(#client::NoException),
    };
    let mut params = Vec::new();
    let mut args = Vec::new();
    for (arg, ty) in method.args.iter().zip(&signature.args) {
        let param = format_ident_raw(&rust_field_name(&arg.name));
        let (param_type, value) = parameter(set, rt, ty, &param);
        params.push(quote!(#param: #param_type));
        let key = &arg.name;
        args.push(quote!(.arg(#key, #value)));
    }
    let docs = docs(endpoint, method, signature);
    let answer = match &signature.answer {
        Answer::Void => quote!(()),
        Answer::Value(ty) | Answer::Stream(ty) => rust_type(set, rt, ty),
    };
    let method_name = &method.name;
    let call_args = quote!(#client::NamedArgs::new() #(#args)*);
    if method.streaming || matches!(signature.answer, Answer::Stream(_)) {
        let inputs = signature.inputs.iter().map(|(name, _, _)| name);
        quote! {
            #(#[doc = #docs])*
            pub async fn #name(&self, #(#params),*) -> ::core::result::Result<
                #client::StreamCall<#answer, #exception>,
                #client::StreamCallError<#exception>,
            > {
                self.client.call_stream(#endpoint, #method_name, #call_args, &[#(#inputs),*]).await
            }
        }
    } else {
        quote! {
            #(#[doc = #docs])*
            pub async fn #name(&self, #(#params),*) -> ::core::result::Result<#answer, #client::CallError<#exception>> {
                self.client.call(#endpoint, #method_name, #call_args).await
            }
        }
    }
}

/// A parameter's type and the expression that encodes it: `&str` for strings, values
/// for `bool`/`int`/`double`, references for everything else (`Option<&T>` when
/// nullable).
fn parameter(
    set: &ModelSet,
    rt: &syn::Path,
    ty: &Type,
    param: &syn::Ident,
) -> (TokenStream, TokenStream) {
    let by_value = |ty: &Type| {
        matches!(
            ty,
            Type::Scalar(Scalar::Bool | Scalar::Int | Scalar::Double)
        )
    };
    match ty {
        Type::Scalar(Scalar::String) => (quote!(&str), quote!(#param)),
        Type::Option(inner) if matches!(**inner, Type::Scalar(Scalar::String)) => {
            (quote!(::core::option::Option<&str>), quote!(#param))
        }
        ty if by_value(ty) => {
            let rust = rust_type(set, rt, ty);
            (rust, quote!(#rt::wire::Wire(&#param)))
        }
        Type::Option(inner) if by_value(inner) => {
            let rust = rust_type(set, rt, ty);
            (rust, quote!(#rt::wire::Wire(&#param)))
        }
        Type::Option(inner) => {
            let rust = rust_type(set, rt, inner);
            (
                quote!(::core::option::Option<&#rust>),
                quote!(#param.map(#rt::wire::Wire)),
            )
        }
        ty => {
            let rust = rust_type(set, rt, ty);
            (quote!(&#rust), quote!(#rt::wire::Wire(#param)))
        }
    }
}

/// The method's doc comment, then what the call is and needs, one fact per line.
fn docs(endpoint: &str, method: &MethodSignature, signature: &Signature) -> Vec<String> {
    let mut lines: Vec<String> = method.docs.lines().map(|line| format!(" {line}")).collect();
    if !lines.is_empty() {
        lines.push(String::new());
    }
    let mut facts = Vec::new();
    if method.streaming {
        facts.push(format!(
            "A streaming method (`{endpoint}.{}` over `/v1/websocket`): iterate the call for its values",
            method.name
        ));
        for (name, _, class) in &signature.inputs {
            facts.push(format!("send `{class}` values on `call.input(\"{name}\")`"));
        }
    } else {
        facts.push(format!("`POST /{endpoint}/{}`", method.name));
    }
    facts.extend(method_types::access(method));
    lines.push(format!(" {}.", facts.join("; ")));
    lines
}
