//! Procedural macros of streampod. The `#[endpoint]` attribute, which turns an `impl`
//! block's async methods into HTTP-callable endpoint methods, lands with the HTTP method
//! call work; until then this crate exports nothing.
