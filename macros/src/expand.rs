//! The checked model → the original impl block plus a `Methods` implementation: a static
//! method table and a `call_method` that decodes named arguments, calls, and encodes.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::parse::{EndpointImpl, Method, Output, StreamOutput};

pub(crate) fn expand(model: &EndpointImpl) -> TokenStream {
    let item = &model.item;
    let self_ty = &item.self_ty;
    let mut generics = item.generics.clone();
    let protocol = match &model.protocol {
        Some(protocol) => quote!(#protocol),
        None => {
            generics
                .params
                .push(syn::parse_quote!(__P: ::streampod::__private::ModelSet));
            quote!(__P)
        }
    };
    let (impl_generics, _, where_clause) = generics.split_for_impl();
    let table = model.methods.iter().map(table_entry);
    let type_arms = model
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| types_arm(index, method));
    let arms = model
        .methods
        .iter()
        .enumerate()
        .filter(|(_, method)| !method.streaming)
        .map(|(index, method)| call_arm(index, method));
    let stream_arms = model
        .methods
        .iter()
        .enumerate()
        .filter(|(_, method)| method.streaming)
        .map(|(index, method)| open_arm(index, method));
    quote! {
        #item

        impl #impl_generics ::streampod::__private::Methods<#protocol> for #self_ty #where_clause {
            fn method_table(&self) -> &'static [::streampod::__private::MethodInfo] {
                const TABLE: &[::streampod::__private::MethodInfo] = &[#(#table),*];
                TABLE
            }

            fn method_types(&self, index: usize) -> ::streampod::__private::MethodTypes {
                #[allow(unused_imports)]
                use ::streampod::__private::{ProbeTypes as _, ProbeTypesFallback as _};
                match index {
                    #(#type_arms)*
                    _ => ::streampod::__private::MethodTypes::default(),
                }
            }

            fn call_method<'a>(
                &'a self,
                index: usize,
                session: &'a ::streampod::__private::Session<#protocol>,
                mut args: ::streampod::__private::Args,
            ) -> ::streampod::__private::MethodFuture<'a> {
                let _ = &session;
                match index {
                    #(#arms)*
                    _ => ::streampod::__private::Box::pin(async move {
                        ::core::result::Result::Err(::streampod::MethodError::not_found("no such method"))
                    }),
                }
            }

            // Each decode is a `match` spanned at its type (a `?` would report there less
            // clearly).
            #[allow(clippy::question_mark)]
            fn open_stream<'a>(
                &'a self,
                index: usize,
                session: &'a ::streampod::__private::Session<#protocol>,
                mut args: ::streampod::__private::Args,
                mut inputs: ::streampod::__private::Inputs,
            ) -> ::core::result::Result<::streampod::__private::OutputStream<'a>, ::streampod::MethodError> {
                let _ = (&session, &mut args, &mut inputs);
                match index {
                    #(#stream_arms)*
                    _ => ::core::result::Result::Err(::streampod::MethodError::not_found("no such streaming method")),
                }
            }
        }
    }
}

fn table_entry(method: &Method) -> TokenStream {
    let name = &method.wire_name;
    let docs = &method.docs;
    let args = method
        .args
        .iter()
        .filter(|a| !a.input_stream)
        .map(|a| &a.wire_name);
    let inputs = method
        .args
        .iter()
        .filter(|a| a.input_stream)
        .map(|a| &a.wire_name);
    let streaming = method.streaming;
    let login = method.access.require_login;
    let scopes = &method.access.scopes;
    quote! {
        ::streampod::__private::MethodInfo {
            name: #name,
            docs: #docs,
            args: &[#(#args),*],
            input_streams: &[#(#inputs),*],
            streaming: #streaming,
            require_login: #login,
            scopes: &[#(#scopes),*],
        }
    }
}

/// The arm of `method_types` for one method: each type's model-file name. Read through
/// probes, so a type without a wire form is reported once, by the call arm.
fn types_arm(index: usize, method: &Method) -> TokenStream {
    let model_type =
        |ty: &syn::Type| quote!((&::streampod::__private::TypeProbe::<#ty>::new()).model_type());
    let args = method
        .args
        .iter()
        .filter(|arg| !arg.input_stream)
        .map(|arg| model_type(&arg.ty));
    let inputs = method
        .args
        .iter()
        .filter(|arg| arg.input_stream)
        .map(|arg| model_type(&arg.ty));
    let exception_of = |err: &syn::Type| quote!((&::streampod::__private::ErrorProbe::<#err>::new()).exception_class());
    let (returns, exception) = match &method.output {
        Output::Stream(StreamOutput {
            item,
            item_error,
            open_error,
            ..
        }) => {
            let item = model_type(item);
            let exception = match (item_error, open_error) {
                (Some(err), _) | (None, Some(err)) => exception_of(err),
                (None, None) => quote!(::core::option::Option::None),
            };
            (quote!(::std::format!("Stream<{}>", #item)), exception)
        }
        Output::Result(ok, err) => (model_type(ok), exception_of(err)),
        Output::Plain(Some(ty)) => (model_type(ty), quote!(::core::option::Option::None)),
        Output::Plain(None) => (
            model_type(&syn::parse_quote!(())),
            quote!(::core::option::Option::None),
        ),
    };
    quote! {
        #index => ::streampod::__private::MethodTypes {
            args: ::std::vec![#(#args),*],
            input_streams: ::std::vec![#(#inputs),*],
            returns: #returns,
            exception: #exception,
        },
    }
}

/// Decodes each argument (and, for a streaming method, takes each input stream) into a
/// local of its name; an error returns from the enclosing block.
fn decode_args(method: &Method) -> TokenStream {
    let decode = method.args.iter().map(|arg| {
        let (name, wire_name, ty) = (&arg.ident, &arg.wire_name, &arg.ty);
        // Spanned at the type, so a type without a wire form is reported there.
        if arg.input_stream {
            quote_spanned! {ty.span()=>
                let #name: ::streampod::MethodStream<#ty> = inputs.take::<#ty>(#wire_name);
            }
        } else {
            quote_spanned! {ty.span()=>
                let #name: #ty = match args.take::<#ty>(#wire_name) {
                    ::core::result::Result::Ok(value) => value,
                    ::core::result::Result::Err(error) => return ::core::result::Result::Err(error),
                };
            }
        }
    });
    quote! {
        #(#decode)*
        if let ::core::result::Result::Err(error) = args.finish() {
            return ::core::result::Result::Err(error);
        }
    }
}

/// `self.method(session, a, b).await`.
fn call_expr(method: &Method) -> TokenStream {
    let ident = &method.ident;
    let names = method.args.iter().map(|a| &a.ident);
    let session = method.has_session.then(|| quote!(session,));
    quote!(self.#ident(#session #(#names),*).await)
}

/// The arm of `open_stream` for one streaming method: decodes the arguments now (a
/// failure answers the open), and returns the answer stream, which runs the method
/// when first polled.
fn open_arm(index: usize, method: &Method) -> TokenStream {
    let decode = decode_args(method);
    let call = call_expr(method);
    let convert = |err: &syn::Type| quote_spanned!(err.span()=> ::streampod::__private::into_method_error::<#err>(error));
    let stream = match &method.output {
        Output::Stream(StreamOutput {
            item,
            item_error,
            open_error,
            feed,
        }) => {
            let opened = match open_error {
                Some(err) => {
                    let convert = convert(err);
                    quote! {
                        match #call {
                            ::core::result::Result::Ok(stream) => ::core::result::Result::Ok(stream),
                            ::core::result::Result::Err(error) => ::core::result::Result::Err(#convert),
                        }
                    }
                }
                None => quote!(::core::result::Result::Ok(#call)),
            };
            let items = match item_error {
                Some(err) => {
                    let convert = convert(err);
                    quote!(|item| match item {
                        ::core::result::Result::Ok(value) => ::core::result::Result::Ok(value),
                        ::core::result::Result::Err(error) => ::core::result::Result::Err(#convert),
                    })
                }
                None => quote!(::core::result::Result::Ok),
            };
            let has_inputs = method.args.iter().any(|arg| arg.input_stream);
            if *feed {
                return quote! {
                    #index => {
                        #decode
                        ::core::result::Result::Ok(::streampod::__private::answer_feed::<_, #item>(#has_inputs, async move {
                            let opened: ::core::result::Result<_, ::streampod::MethodError> = #opened;
                            opened
                        }))
                    }
                };
            }
            quote_spanned! {item.span()=>
                ::streampod::__private::answer_stream::<_, _, #item>(#has_inputs, async move {
                    let opened: ::core::result::Result<_, ::streampod::MethodError> = #opened;
                    opened.map(|stream| ::streampod::__private::StreamExt::map(stream, #items))
                })
            }
        }
        Output::Result(ok, err) => {
            let convert = convert(err);
            quote_spanned! {ok.span()=>
                ::streampod::__private::answer_value::<#ok>(async move {
                    match #call {
                        ::core::result::Result::Ok(value) => ::core::result::Result::Ok(value),
                        ::core::result::Result::Err(error) => ::core::result::Result::Err(#convert),
                    }
                })
            }
        }
        Output::Plain(Some(ty)) => quote_spanned! {ty.span()=>
            ::streampod::__private::answer_value::<#ty>(async move { ::core::result::Result::Ok(#call) })
        },
        Output::Plain(None) => quote! {
            ::streampod::__private::answer_value::<()>(async move { ::core::result::Result::Ok(#call) })
        },
    };
    quote! {
        #index => {
            #decode
            ::core::result::Result::Ok(#stream)
        }
    }
}

fn call_arm(index: usize, method: &Method) -> TokenStream {
    let decode = decode_args(method);
    let call = call_expr(method);
    // Each conversion is spanned at its type, so a type without a wire form (or an
    // unsupported error type) is reported at that type.
    let respond = match &method.output {
        Output::Result(ok, err) => {
            let encode =
                quote_spanned!(ok.span()=> ::streampod::__private::respond_value::<#ok>(&value));
            let convert = quote_spanned!(err.span()=> ::streampod::__private::into_method_error::<#err>(error));
            quote! {
                match #call {
                    ::core::result::Result::Ok(value) => #encode,
                    ::core::result::Result::Err(error) => ::core::result::Result::Err(#convert),
                }
            }
        }
        Output::Plain(Some(ty)) => {
            let encode =
                quote_spanned!(ty.span()=> ::streampod::__private::respond_value::<#ty>(&value));
            quote! {{
                let value = #call;
                #encode
            }}
        }
        Output::Plain(None) => quote! {{
            #call;
            ::streampod::__private::respond_value(&())
        }},
        // Streaming methods have no call arm; this one is never generated.
        Output::Stream(_) => quote!(::core::result::Result::Err(
            ::streampod::MethodError::not_found("a streaming method is opened over /v1/websocket")
        )),
    };
    quote! {
        #index => ::streampod::__private::Box::pin(async move {
            #decode
            #respond
        }),
    }
}
