//! The checked model → the original impl block plus a `Methods` implementation: a static
//! method table and a `call_method` that decodes named arguments, calls, and encodes.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::parse::{EndpointImpl, Method, Output};

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
        .map(|(index, method)| call_arm(index, method));
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
        }
    }
}

fn table_entry(method: &Method) -> TokenStream {
    let name = &method.wire_name;
    let docs = &method.docs;
    let args = method.args.iter().map(|a| &a.wire_name);
    let login = method.access.require_login;
    let scopes = &method.access.scopes;
    quote! {
        ::streampod::__private::MethodInfo {
            name: #name,
            docs: #docs,
            args: &[#(#args),*],
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
    let args = method.args.iter().map(|arg| model_type(&arg.ty));
    let (returns, exception) = match &method.output {
        Output::Result(ok, err) => (
            model_type(ok),
            quote!((&::streampod::__private::ErrorProbe::<#err>::new()).exception_class()),
        ),
        Output::Plain(Some(ty)) => (model_type(ty), quote!(::core::option::Option::None)),
        Output::Plain(None) => (
            model_type(&syn::parse_quote!(())),
            quote!(::core::option::Option::None),
        ),
    };
    quote! {
        #index => ::streampod::__private::MethodTypes {
            args: ::std::vec![#(#args),*],
            returns: #returns,
            exception: #exception,
        },
    }
}

fn call_arm(index: usize, method: &Method) -> TokenStream {
    let ident = &method.ident;
    let decode = method.args.iter().map(|arg| {
        let (name, wire_name, ty) = (&arg.ident, &arg.wire_name, &arg.ty);
        // Spanned at the type, so a type without a wire form is reported there.
        quote_spanned! {ty.span()=>
            let #name: #ty = match args.take::<#ty>(#wire_name) {
                ::core::result::Result::Ok(value) => value,
                ::core::result::Result::Err(error) => return ::core::result::Result::Err(error),
            };
        }
    });
    let names = method.args.iter().map(|a| &a.ident);
    let session = method.has_session.then(|| quote!(session,));
    let call = quote!(self.#ident(#session #(#names),*).await);
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
    };
    quote! {
        #index => ::streampod::__private::Box::pin(async move {
            #(#decode)*
            if let ::core::result::Result::Err(error) = args.finish() {
                return ::core::result::Result::Err(error);
            }
            #respond
        }),
    }
}
