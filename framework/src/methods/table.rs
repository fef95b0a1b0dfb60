//! The table the `#[endpoint]` macro generates for an `impl` block: the [`Methods`]
//! trait.

use std::sync::Arc;


use super::answer::{MethodFuture, OutputStream};
use super::args::Args;
use super::error::MethodError;
use super::info::{MethodInfo, MethodTypes};
use super::call_context::Session;
use crate::methods::input::Inputs;
use crate::protocol::ModelSet;


/// A type whose `#[endpoint]` impl block makes methods callable over HTTP. Implemented
/// by the macro; register with [`ServerBuilder::methods`](crate::ServerBuilder::methods).
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no HTTP methods for `{P}`",
    note = "put `#[streampod::endpoint]` on an `impl` block of `{Self}` with `pub async fn` methods taking `&Session<{P}>`"
)]
pub trait Methods<P: ModelSet>: Send + Sync + 'static {
    /// The methods, in declaration order.
    #[doc(hidden)]
    fn method_table(&self) -> &'static [MethodInfo];

    /// The argument, answer and exception types of the method at `index` of the table.
    #[doc(hidden)]
    fn method_types(&self, index: usize) -> MethodTypes;

    /// Calls the method at `index` of the table with decoded `args`.
    #[doc(hidden)]
    fn call_method<'a>(
        &'a self,
        index: usize,
        session: &'a Session<P>,
        args: Args,
    ) -> MethodFuture<'a>;

    /// Opens the streaming method at `index`: decodes `args` now (an error refuses the
    /// open), and returns the answer stream, which runs the method when first polled.
    #[doc(hidden)]
    fn open_stream<'a>(
        &'a self,
        index: usize,
        session: &'a Session<P>,
        args: Args,
        inputs: Inputs,
    ) -> Result<OutputStream<'a>, MethodError>;
}

impl<P: ModelSet, T: Methods<P>> Methods<P> for Arc<T> {
    fn method_table(&self) -> &'static [MethodInfo] {
        (**self).method_table()
    }

    fn method_types(&self, index: usize) -> MethodTypes {
        (**self).method_types(index)
    }

    fn call_method<'a>(
        &'a self,
        index: usize,
        session: &'a Session<P>,
        args: Args,
    ) -> MethodFuture<'a> {
        (**self).call_method(index, session, args)
    }

    fn open_stream<'a>(
        &'a self,
        index: usize,
        session: &'a Session<P>,
        args: Args,
        inputs: Inputs,
    ) -> Result<OutputStream<'a>, MethodError> {
        (**self).open_stream(index, session, args, inputs)
    }
}
