//! `#[endpoint]` input → a checked model of the methods. All errors are collected and
//! reported together, each at its token.

use proc_macro2::TokenStream;
use syn::punctuated::Punctuated;
use syn::{
    FnArg, GenericArgument, ImplItem, ItemImpl, LitStr, Pat, PathArguments, ReturnType, Token,
    Type, Visibility,
};

/// Access rules from `#[endpoint(...)]` or `#[method(...)]`.
#[derive(Default, Clone)]
pub(crate) struct Access {
    pub(crate) require_login: bool,
    pub(crate) scopes: Vec<LitStr>,
}

pub(crate) enum Output {
    /// `-> Result<R, E>`: the `R` and `E` types.
    Result(Box<Type>, Box<Type>),
    /// `-> R`, or nothing (`()`).
    Plain(Option<Box<Type>>),
    /// `-> impl Stream<Item = T>` (or a boxed stream), possibly in `Result<…, E>`.
    Stream(StreamOutput),
}

/// A streaming method's answer stream.
pub(crate) struct StreamOutput {
    /// The item type `T`, or the `T` of `Item = Result<T, F>`.
    pub(crate) item: Box<Type>,
    /// `F` of `Item = Result<T, F>`: an item that fails ends the call with it.
    pub(crate) item_error: Option<Box<Type>>,
    /// `E` of `-> Result<impl Stream…, E>`: the method refused before streaming.
    pub(crate) open_error: Option<Box<Type>>,
    /// The method returns a `ChannelFeed<T>` by name: the socket sends its values
    /// straight from the message central.
    pub(crate) feed: bool,
}

pub(crate) struct Argument {
    pub(crate) ident: syn::Ident,
    pub(crate) wire_name: String,
    /// The argument's type; for an input stream, its item type.
    pub(crate) ty: Type,
    /// Whether the argument is an input stream (`MethodStream<T>`), fed by the client
    /// while the call runs rather than decoded from the arguments.
    pub(crate) input_stream: bool,
}

pub(crate) struct Method {
    pub(crate) ident: syn::Ident,
    /// Whether the method is opened over `/v1/websocket` (it returns a stream or takes
    /// an input stream) rather than called over HTTP.
    pub(crate) streaming: bool,
    /// The method's doc comment, for the method schema.
    pub(crate) docs: String,
    pub(crate) wire_name: String,
    pub(crate) has_session: bool,
    pub(crate) args: Vec<Argument>,
    pub(crate) output: Output,
    pub(crate) access: Access,
}

/// The checked `#[endpoint]` impl block.
pub(crate) struct EndpointImpl {
    /// The block as written, minus the `#[method]` attributes.
    pub(crate) item: ItemImpl,
    /// The model set from `&Session<P>`, when a method names it.
    pub(crate) protocol: Option<Type>,
    pub(crate) methods: Vec<Method>,
}

/// Collects errors so all of them are reported.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(existing) => existing.combine(error),
            None => self.0 = Some(error),
        }
    }

    fn finish<T>(self, value: T) -> syn::Result<T> {
        match self.0 {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }
}

pub(crate) fn parse(attr: TokenStream, item: TokenStream) -> syn::Result<EndpointImpl> {
    let mut item: ItemImpl = syn::parse2(item).map_err(|e| {
        syn::Error::new(
            e.span(),
            "#[endpoint] goes on an `impl` block: `#[endpoint] impl MyEndpoint { … }`",
        )
    })?;
    let mut errors = Errors::default();
    let defaults = match parse_access(attr) {
        Ok(access) => access,
        Err(error) => {
            errors.push(error);
            Access::default()
        }
    };
    if let Some((_, path, _)) = &item.trait_ {
        errors.push(syn::Error::new_spanned(
            path,
            "#[endpoint] goes on an inherent impl block (`impl MyEndpoint`), not a trait impl",
        ));
    }

    let mut methods: Vec<Method> = Vec::new();
    let mut protocol: Option<Type> = None;
    for impl_item in &mut item.items {
        let ImplItem::Fn(function) = impl_item else {
            continue;
        };
        let mut access = defaults.clone();
        let mut kept = Vec::with_capacity(function.attrs.len());
        for attr in std::mem::take(&mut function.attrs) {
            if attr.path().is_ident("method") {
                match attr
                    .meta
                    .require_list()
                    .and_then(|list| parse_access(list.tokens.clone()))
                {
                    Ok(own) => {
                        access.require_login |= own.require_login;
                        access.scopes.extend(own.scopes);
                    }
                    Err(error) => errors.push(error),
                }
            } else {
                kept.push(attr);
            }
        }
        function.attrs = kept;
        if !matches!(function.vis, Visibility::Public(_)) {
            continue;
        }
        match parse_method(&function.sig, access) {
            Ok((mut method, session_protocol)) => {
                method.docs = doc_comment(&function.attrs);
                if let (None, Some(found)) = (&protocol, session_protocol) {
                    protocol = Some(found);
                }
                if let Some(previous) = methods.iter().find(|m| m.wire_name == method.wire_name) {
                    errors.push(syn::Error::new_spanned(
                        &function.sig.ident,
                        format!(
                            "`{}` and `{}` are both the method '{}' on the wire",
                            previous.ident, method.ident, method.wire_name
                        ),
                    ));
                }
                methods.push(method);
            }
            Err(error) => errors.push(error),
        }
    }
    if methods.is_empty() && errors.0.is_none() {
        errors.push(syn::Error::new_spanned(
            &item.self_ty,
            "an #[endpoint] impl block needs at least one `pub async fn` method",
        ));
    }
    errors.finish(EndpointImpl {
        item,
        protocol,
        methods,
    })
}

/// The text of `///` comments (`#[doc = "…"]`), one line each, the leading space taken off.
fn doc_comment(attrs: &[syn::Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|attr| attr.path().is_ident("doc"))
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(syn::MetaNameValue {
                value:
                    syn::Expr::Lit(syn::ExprLit {
                        lit: syn::Lit::Str(text),
                        ..
                    }),
                ..
            }) => Some(text.value()),
            _ => None,
        })
        .flat_map(|text| {
            text.lines()
                .map(|line| line.strip_prefix(' ').unwrap_or(line).trim_end().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

/// The item as written, minus `#[method]` attributes, for when the macro fails.
pub(crate) fn fallback(item: TokenStream) -> TokenStream {
    let Ok(mut parsed) = syn::parse2::<ItemImpl>(item.clone()) else {
        return item;
    };
    for impl_item in &mut parsed.items {
        if let ImplItem::Fn(function) = impl_item {
            function
                .attrs
                .retain(|attr| !attr.path().is_ident("method"));
        }
    }
    quote::ToTokens::into_token_stream(parsed)
}

/// `require_login`, `scopes("a", "b")`, comma separated.
fn parse_access(tokens: TokenStream) -> syn::Result<Access> {
    let mut access = Access::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("require_login") {
            access.require_login = true;
            Ok(())
        } else if meta.path.is_ident("scopes") {
            let content;
            syn::parenthesized!(content in meta.input);
            let scopes = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
            access.scopes.extend(scopes);
            Ok(())
        } else {
            Err(meta.error("unknown option; expected `require_login` or `scopes(\"name\", …)`"))
        }
    });
    syn::parse::Parser::parse2(parser, tokens)?;
    Ok(access)
}

fn parse_method(sig: &syn::Signature, access: Access) -> syn::Result<(Method, Option<Type>)> {
    let mut errors = Errors::default();
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "endpoint methods must be `async`: write `pub async fn`, or make the method private to keep it off the wire",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "endpoint methods cannot be generic: arguments are decoded by concrete type",
        ));
    }
    let mut inputs = sig.inputs.iter();
    match inputs.next() {
        Some(FnArg::Receiver(receiver))
            if receiver.reference.is_some() && receiver.mutability.is_none() => {}
        Some(FnArg::Receiver(receiver)) => errors.push(syn::Error::new_spanned(
            receiver,
            "endpoint methods take `&self`: one endpoint value serves concurrent calls",
        )),
        _ => errors.push(syn::Error::new(
            sig.paren_token.span.join(),
            "endpoint methods take `&self` first",
        )),
    }

    let mut has_session = false;
    let mut protocol = None;
    let mut args = Vec::new();
    for (position, input) in inputs.enumerate() {
        let FnArg::Typed(typed) = input else { continue };
        if let Some(found) = session_protocol(&typed.ty) {
            if position == 0 {
                has_session = true;
                protocol = Some(found);
            } else {
                errors.push(syn::Error::new_spanned(
                    &typed.ty,
                    "the `&Session` argument comes first, right after `&self`",
                ));
            }
            continue;
        }
        let Pat::Ident(pattern) = &*typed.pat else {
            errors.push(syn::Error::new_spanned(
                &typed.pat,
                "use a plain name for each argument: arguments are matched by name",
            ));
            continue;
        };
        if pattern.by_ref.is_some() || pattern.subpat.is_some() {
            errors.push(syn::Error::new_spanned(
                pattern,
                "use a plain name for each argument",
            ));
            continue;
        }
        let input_item = match last_segment_generic(&typed.ty, "MethodStream") {
            Some(Some(item)) => Some(item),
            Some(None) => {
                errors.push(syn::Error::new_spanned(
                    &typed.ty,
                    "name the input stream's item type: `MethodStream<T>`",
                ));
                continue;
            }
            None => None,
        };
        if input_item.is_none() {
            if let Type::ImplTrait(_) | Type::Reference(_) = &*typed.ty {
                errors.push(syn::Error::new_spanned(
                    &typed.ty,
                    "arguments are decoded from JSON into owned values: use a concrete owned type such as `String` (an input stream the client feeds is `MethodStream<T>`)",
                ));
                continue;
            }
        }
        let name = pattern.ident.to_string();
        args.push(Argument {
            ident: pattern.ident.clone(),
            wire_name: camel_case(name.trim_start_matches("r#")),
            input_stream: input_item.is_some(),
            ty: input_item.unwrap_or_else(|| (*typed.ty).clone()),
        });
    }
    let output = match &sig.output {
        ReturnType::Default => Output::Plain(None),
        ReturnType::Type(_, ty) => match result_types(ty) {
            Some((ok, err)) if is_stream(&ok) => match stream_output(&ok, Some(err)) {
                Ok(output) => Output::Stream(output),
                Err(error) => {
                    errors.push(error);
                    Output::Plain(None)
                }
            },
            Some((ok, err)) => Output::Result(Box::new(ok), Box::new(err)),
            None if is_stream(ty) => match stream_output(ty, None) {
                Ok(output) => Output::Stream(output),
                Err(error) => {
                    errors.push(error);
                    Output::Plain(None)
                }
            },
            None if is_result(ty) => {
                errors.push(syn::Error::new_spanned(
                    ty,
                    "spell the return type `Result<T, E>` with both types",
                ));
                Output::Plain(None)
            }
            None => Output::Plain(Some(ty.clone())),
        },
    };
    let streaming = matches!(output, Output::Stream(_)) || args.iter().any(|a| a.input_stream);
    let method = Method {
        ident: sig.ident.clone(),
        streaming,
        docs: String::new(),
        wire_name: camel_case(sig.ident.to_string().trim_start_matches("r#")),
        has_session,
        args,
        output,
        access,
    };
    errors.finish((method, protocol))
}

/// `P` of a `&Session<P>` type.
fn session_protocol(ty: &Type) -> Option<Type> {
    let Type::Reference(reference) = ty else {
        return None;
    };
    let Type::Path(path) = &*reference.elem else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Session" {
        return None;
    }
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    generics.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    })
}

/// `R` and `E` of `Result<R, E>`.
fn result_types(ty: &Type) -> Option<(Type, Type)> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return None;
    };
    let mut types = generics.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    });
    Some((types.next()?, types.next()?))
}

/// The last path segment's one type argument when it is named `name`: `Some(None)` when
/// it is named so but has no type argument, `None` when it is named otherwise.
fn last_segment_generic(ty: &Type, name: &str) -> Option<Option<Type>> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(generics) = &last.arguments else {
        return Some(None);
    };
    Some(generics.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    }))
}

/// The `Stream<Item = T>` bound among `bounds`: `Some(None)` for a `Stream` without `Item`.
fn stream_bound<'a>(
    bounds: impl IntoIterator<Item = &'a syn::TypeParamBound>,
) -> Option<Option<Type>> {
    bounds.into_iter().find_map(|bound| {
        let syn::TypeParamBound::Trait(bound) = bound else {
            return None;
        };
        let last = bound.path.segments.last()?;
        if last.ident != "Stream" {
            return None;
        }
        let PathArguments::AngleBracketed(generics) = &last.arguments else {
            return Some(None);
        };
        Some(generics.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Item" => Some(assoc.ty.clone()),
            _ => None,
        }))
    })
}

/// The item type of a stream type: `impl Stream<Item = T>`, `Box<dyn Stream<Item = T>…>`,
/// `Pin<Box<…>>`, `BoxStream<'_, T>`, `MethodStream<T>`. `Some(None)`: a stream whose item
/// type is not written out.
fn stream_item(ty: &Type) -> Option<Option<Type>> {
    match ty {
        Type::ImplTrait(found) => stream_bound(&found.bounds),
        Type::TraitObject(found) => stream_bound(&found.bounds),
        Type::Paren(inner) => stream_item(&inner.elem),
        Type::Group(inner) => stream_item(&inner.elem),
        Type::Path(_) => {
            for wrapper in ["Pin", "Box"] {
                if let Some(Some(inner)) = last_segment_generic(ty, wrapper) {
                    return stream_item(&inner);
                }
            }
            ["BoxStream", "MethodStream", "ChannelFeed"]
                .iter()
                .find_map(|name| last_segment_generic(ty, name))
        }
        _ => None,
    }
}

fn is_stream(ty: &Type) -> bool {
    stream_item(ty).is_some()
}

/// The answer stream of a method returning `ty`, or `Result<ty, open_error>`.
fn stream_output(ty: &Type, open_error: Option<Type>) -> syn::Result<StreamOutput> {
    let Some(Some(item)) = stream_item(ty) else {
        return Err(syn::Error::new_spanned(
            ty,
            "name the stream's item type: `impl Stream<Item = T>`",
        ));
    };
    let (item, item_error) = match result_types(&item) {
        Some((ok, err)) => (ok, Some(Box::new(err))),
        None if is_result(&item) => {
            return Err(syn::Error::new_spanned(
                item,
                "spell the item type `Result<T, E>` with both types",
            ))
        }
        None => (item, None),
    };
    if is_stream(&item) {
        return Err(syn::Error::new_spanned(
            item,
            "a stream's items are values sent to the client; a stream of streams has no wire form",
        ));
    }
    Ok(StreamOutput {
        item: Box::new(item),
        item_error,
        open_error: open_error.map(Box::new),
        feed: last_segment_generic(ty, "ChannelFeed").is_some(),
    })
}

fn is_result(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.path.segments.last().is_some_and(|s| s.ident == "Result"))
}

/// `send_notification` → `sendNotification`.
pub(crate) fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = !out.is_empty();
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    #[test]
    fn camel_case_names() {
        assert_eq!(camel_case("send_notification"), "sendNotification");
        assert_eq!(camel_case("notify"), "notify");
        assert_eq!(camel_case("user_id_2"), "userId2");
    }

    #[test]
    fn reads_methods_access_and_protocol() {
        let model = parse(
            quote!(require_login),
            quote! {
                impl Notes {
                    pub async fn send_note(&self, session: &Session<Protocol>, user_id: i64, text: Option<String>) -> Result<(), EndpointError> { Ok(()) }
                    #[method(scopes("admin"))]
                    pub async fn wipe(&self) {}
                    fn helper(&self) {}
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(model.methods.len(), 2);
        let send = &model.methods[0];
        assert_eq!(send.wire_name, "sendNote");
        assert!(send.has_session);
        assert_eq!(
            send.args
                .iter()
                .map(|a| a.wire_name.as_str())
                .collect::<Vec<_>>(),
            ["userId", "text"]
        );
        assert!(matches!(send.output, Output::Result(..)));
        assert!(model.methods[1].access.require_login);
        assert_eq!(model.methods[1].access.scopes[0].value(), "admin");
        assert!(model.protocol.is_some());
    }

    #[test]
    fn reads_streaming_methods() {
        let model = parse(
            quote!(),
            quote! {
                impl Live {
                    pub async fn feed(&self, room: String) -> Result<impl Stream<Item = Result<ChatMessage, Oops>> + Send, Refused> { Ok(stream::empty()) }
                    pub async fn total(&self, numbers: MethodStream<i64>, start: i64) -> i64 { 0 }
                    pub async fn boxed(&self) -> Pin<Box<dyn Stream<Item = i64> + Send>> { Box::pin(stream::empty()) }
                    pub async fn plain(&self) -> Vec<i64> { Vec::new() }
                }
            },
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let [feed, total, boxed, plain] = &model.methods[..] else {
            panic!("four methods");
        };
        assert!(feed.streaming && !feed.args[0].input_stream);
        let Output::Stream(output) = &feed.output else {
            panic!("a stream");
        };
        assert!(output.item_error.is_some() && output.open_error.is_some());
        assert!(total.streaming && total.args[0].input_stream && !total.args[1].input_stream);
        assert!(matches!(total.output, Output::Plain(Some(_))));
        assert!(boxed.streaming && matches!(boxed.output, Output::Stream(_)));
        assert!(!plain.streaming);
    }

    #[test]
    fn reports_every_bad_signature() {
        let error = parse(
            quote!(),
            quote! {
                impl Notes {
                    pub fn not_async(&self) {}
                    pub async fn no_self() {}
                    pub async fn bad_arg(&self, (a, b): (i64, i64)) {}
                }
            },
        )
        .err()
        .unwrap();
        let messages: Vec<String> = error.into_iter().map(|e| e.to_string()).collect();
        assert_eq!(messages.len(), 3, "{messages:?}");
        assert!(messages[0].contains("must be `async`"));
        assert!(messages[1].contains("take `&self`"));
        assert!(messages[2].contains("plain name"));
    }
}
