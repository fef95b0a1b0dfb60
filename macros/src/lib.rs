//! Procedural macros of streampod. Use them through the `streampod` crate
//! (`streampod::endpoint`); see its `methods` module for the full story.
//!
//! The crate is thin: the entry point parses and checks the `impl` block into a small
//! model (`parse`), then emits the method table (`expand`). Every problem is a
//! compile error at the offending token.

mod expand;
mod parse;

use proc_macro::TokenStream;

/// Makes the `pub async fn` methods of an inherent `impl` block callable over HTTP as
/// `POST /<endpoint>/<methodName>`, with named JSON arguments.
///
/// ```text
/// #[streampod::endpoint]                        // or #[endpoint(require_login)]
/// impl NotificationEndpoint {                   //    #[endpoint(scopes("admin"))]
///     pub async fn notify_user(
///         &self,
///         session: &Session<Protocol>,          // optional, first when present
///         user_id: i64,                         // the argument "userId"
///         notification: UserNotification,
///     ) -> Result<bool, EndpointError> { … }    // or a plain return type
///
///     #[method(scopes("admin"))]                // per-method access rules
///     pub async fn broadcast_announcement(&self, session: &Session<Protocol>, message: String) { … }
/// }
/// ```
///
/// Methods that are not `pub` are left alone, so helpers can live in the same block.
#[proc_macro_attribute]
pub fn endpoint(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    match parse::parse(attr.into(), item.clone()) {
        Ok(model) => expand::expand(&model).into(),
        Err(error) => {
            // Keep the user's code so the errors above are the only ones.
            let mut tokens = error.into_compile_error();
            tokens.extend(parse::fallback(item));
            tokens.into()
        }
    }
}
