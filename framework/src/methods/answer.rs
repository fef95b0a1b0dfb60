//! What a method answers: a value once, or a stream of values, as encoded JSON.

use std::future::Future;
use std::pin::Pin;

use futures_util::{Stream, StreamExt};

use super::error::MethodError;
use crate::messages::feed::FeedAnswer;
use crate::messages::ChannelFeed;
use crate::protocol::wire::{Wire, WireValue};
use crate::protocol::SerializableModel;


/// The future of one method call: the encoded JSON answer or an error.
#[doc(hidden)]
pub type MethodFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, MethodError>> + Send + 'a>>;

/// One step of a streaming-method call's answer.
#[doc(hidden)]
#[derive(Debug)]
pub enum Answer {
    /// The call is open: the client may be told `success`. A method without input
    /// streams is run first (so what it subscribes to is in place when the client
    /// hears `success`); one with inputs is opened at once, as its client sends
    /// inputs only after `success`.
    Opened,
    /// A value, as `{"className":…,"data":…}` JSON text.
    Value(Vec<u8>),
    /// The method returned a channel feed: the socket sends its values straight from
    /// the message central (after [`Answer::Opened`] for a method with inputs; for one
    /// without, the feed comes first and the call opens when it is taken over). The
    /// call lasts until the feed ends.
    Feed(FeedAnswer),
    /// The error that ends the call.
    Failed(MethodError),
}

/// The answer stream of one streaming-method call.
#[doc(hidden)]
pub type OutputStream<'a> = Pin<Box<dyn Stream<Item = Answer> + Send + 'a>>;

/// The answer of a value or an error; `class_name` from
/// [`wrapped_class`](crate::protocol::method_stream::wrapped_class).
fn answer_of<T: WireValue>(class_name: &str, item: Result<T, MethodError>) -> Answer {
    let value = match item {
        Ok(value) => value,
        Err(error) => return Answer::Failed(error),
    };
    let mut object = Vec::with_capacity(256);
    match crate::protocol::method_stream::write_wrapped(&mut object, class_name, &value) {
        Ok(()) => Answer::Value(object),
        Err(e) => Answer::Failed(MethodError::internal(format_args!(
            "cannot encode a stream value: {e}"
        ))),
    }
}

/// The answer stream of a method returning a stream: `open` runs the method (when the
/// stream is first polled) and gives its stream or the error that refused the call (a
/// refusal comes without [`Answer::Opened`] for a method without inputs).
/// `has_inputs`: the method takes input streams (see [`Answer::Opened`]).
#[doc(hidden)]
pub fn answer_stream<'a, F, S, T>(has_inputs: bool, open: F) -> OutputStream<'a>
where
    F: Future<Output = Result<S, MethodError>> + Send + 'a,
    S: Stream<Item = Result<T, MethodError>> + Send + 'a,
    T: WireValue + Send + 'a,
{
    let class_name = crate::protocol::method_stream::wrapped_class::<T>();
    let opened = futures_util::stream::once(open).flat_map(move |opened| {
        let first = (!has_inputs).then_some(Answer::Opened);
        match opened {
            Ok(stream) => {
                let class_name = class_name.clone();
                futures_util::stream::iter(first)
                    .chain(stream.map(move |item| answer_of(&class_name, item)))
                    .left_stream()
            }
            // Not opened: the socket answers the refusal (an open result, or the
            // call opened and ended with the error), as it sees fit.
            Err(error) => futures_util::stream::iter([Answer::Failed(error)]).right_stream(),
        }
    });
    if has_inputs {
        Box::pin(futures_util::stream::iter([Answer::Opened]).chain(opened))
    } else {
        Box::pin(opened)
    }
}

/// The answer stream of a method returning a [`ChannelFeed`]: `open` runs the method
/// (when the stream is first polled) and gives the feed, or the error that refused the
/// call. `has_inputs`: as for [`answer_stream`].
#[doc(hidden)]
pub fn answer_feed<'a, F, T>(has_inputs: bool, open: F) -> OutputStream<'a>
where
    F: Future<Output = Result<ChannelFeed<T>, MethodError>> + Send + 'a,
    T: SerializableModel + WireValue + Clone,
{
    let opened = futures_util::stream::once(async move {
        match open.await {
            Ok(feed) => Answer::Feed(FeedAnswer(Box::new(feed))),
            Err(error) => Answer::Failed(error),
        }
    });
    if has_inputs {
        Box::pin(futures_util::stream::iter([Answer::Opened]).chain(opened))
    } else {
        Box::pin(opened)
    }
}

/// The answer stream of a streaming method that returns one value (it takes input
/// streams): that value, then the end.
#[doc(hidden)]
pub fn answer_value<'a, T: WireValue>(
    call: impl Future<Output = Result<T, MethodError>> + Send + 'a,
) -> OutputStream<'a> {
    let class_name = crate::protocol::method_stream::wrapped_class::<T>();
    Box::pin(
        futures_util::stream::iter([Answer::Opened]).chain(futures_util::stream::once(
            async move { answer_of(&class_name, call.await) },
        )),
    )
}

/// Encodes a plain return value.
#[doc(hidden)]
pub fn respond_value<R: WireValue>(value: &R) -> Result<Vec<u8>, MethodError> {
    serde_json::to_vec(&Wire(value))
        .map_err(|e| MethodError::internal(format_args!("cannot encode the result: {e}")))
}
