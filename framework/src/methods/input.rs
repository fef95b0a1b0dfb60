//! A streaming method's input stream: the values the client sends on one parameter
//! while the call runs (`msm` frames naming it), as an async [`Stream`].

use std::fmt;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::Stream;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use crate::protocol::method_stream::{unwrap_value, Wrapped};
use crate::protocol::wire::WireValue;
use crate::session::state::HeldInput;

/// What the socket hands an input stream.
#[derive(Debug)]
pub(crate) enum InputEvent {
    /// A value: the `{"className":…,"data":…}` of an `msm`, as JSON text, and its
    /// bytes held in the socket's input budget until the method reads it.
    Value(Box<RawValue>, HeldInput),
    /// The client sent an exception (`msse`): the stream ends with it.
    Exception(Box<RawValue>),
    /// The client closed the stream with `cr: error`.
    ClosedWithError,
    /// The client sent values faster than the method read them: the socket closed the
    /// stream rather than queue without bound.
    Overflow,
}

/// Why an input stream ended early; see [`MethodStream::error`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The client closed the stream with an error.
    #[error("the client closed the input stream with an error")]
    ClosedWithError,
    /// The client sent an exception on the stream.
    #[error("the client sent the exception {class_name} on the input stream")]
    Exception {
        /// The exception's class.
        class_name: String,
        /// Its `data`, as JSON text.
        data: String,
    },
    /// A value did not decode as the stream's item type.
    #[error("a value on the input stream did not decode: {0}")]
    Decode(String),
    /// The client sent more values than the server queues for a method that reads
    /// them slower ([`ServerConfig::method_stream_queue`](crate::ServerConfig::method_stream_queue)).
    #[error("the client sent values faster than the method read them; the stream was closed")]
    Overflow,
}

/// The values a client sends on one input parameter of a streaming method, in order.
///
/// The stream ends when the client closes it (or the call). When it ended because of a
/// failure rather than a clean close, [`error`](Self::error) says which:
///
/// ```no_run
/// # streampod::__doc_models!();
/// use futures_util::StreamExt;
/// use streampod::{endpoint, MethodStream};
///
/// struct Sums;
///
/// #[endpoint]
/// impl Sums {
///     /// The running total of the numbers the client sends.
///     pub async fn running_total(&self, numbers: MethodStream<i64>) -> impl futures_util::Stream<Item = i64> {
///         numbers.scan(0, |total, n| {
///             *total += n;
///             std::future::ready(Some(*total))
///         })
///     }
/// }
/// ```
pub struct MethodStream<T> {
    receiver: Option<mpsc::Receiver<InputEvent>>,
    error: Option<InputError>,
    _item: PhantomData<fn() -> T>,
}

impl<T> fmt::Debug for MethodStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodStream")
            .field("ended", &self.receiver.is_none())
            .field("error", &self.error)
            .finish()
    }
}

impl<T> MethodStream<T> {
    pub(crate) fn new(receiver: mpsc::Receiver<InputEvent>) -> Self {
        Self {
            receiver: Some(receiver),
            error: None,
            _item: PhantomData,
        }
    }

    /// A stream that has already ended (cleanly).
    pub(crate) fn ended() -> Self {
        Self {
            receiver: None,
            error: None,
            _item: PhantomData,
        }
    }

    /// Why the stream ended early, once it has; `None` while it runs and after a clean
    /// close.
    pub fn error(&self) -> Option<&InputError> {
        self.error.as_ref()
    }

    fn end(&mut self, error: Option<InputError>) -> Poll<Option<T>> {
        self.receiver = None;
        self.error = error;
        Poll::Ready(None)
    }
}

/// Decodes a wrapped value as `T`.
fn decode<T: WireValue>(object: &RawValue) -> Result<T, InputError> {
    unwrap_value::<T>(object.get())
        .map_err(|e| InputError::Decode(format!("expected {}: {e}", T::model_type())))
}

impl<T: WireValue> Stream for MethodStream<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        let Some(receiver) = self.receiver.as_mut() else {
            return Poll::Ready(None);
        };
        match receiver.poll_recv(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => self.end(None),
            Poll::Ready(Some(InputEvent::Value(object, _held))) => match decode::<T>(&object) {
                Ok(value) => Poll::Ready(Some(value)),
                Err(error) => self.end(Some(error)),
            },
            Poll::Ready(Some(InputEvent::Exception(object))) => {
                let error = match Wrapped::parse(object.get()) {
                    Ok(wrapped) => InputError::Exception {
                        data: wrapped.data().to_owned(),
                        class_name: wrapped.class_name,
                    },
                    Err(e) => InputError::Decode(e.to_string()),
                };
                self.end(Some(error))
            }
            Poll::Ready(Some(InputEvent::ClosedWithError)) => {
                self.end(Some(InputError::ClosedWithError))
            }
            Poll::Ready(Some(InputEvent::Overflow)) => self.end(Some(InputError::Overflow)),
        }
    }
}

/// The input streams of one call, by parameter name, for the `#[endpoint]` expansion.
#[doc(hidden)]
#[derive(Debug, Default)]
pub struct Inputs {
    streams: Vec<(String, mpsc::Receiver<InputEvent>)>,
}

impl Inputs {
    pub(crate) fn new(streams: Vec<(String, mpsc::Receiver<InputEvent>)>) -> Self {
        Self { streams }
    }

    /// The input stream `name`. The socket checked the names when the call opened, so
    /// a missing one (never the case) is an ended stream.
    pub fn take<T: WireValue>(&mut self, name: &str) -> MethodStream<T> {
        match self.streams.iter().position(|(n, _)| n == name) {
            Some(index) => MethodStream::new(self.streams.swap_remove(index).1),
            None => MethodStream::ended(),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    fn raw(text: &str) -> Box<RawValue> {
        RawValue::from_string(text.to_owned()).unwrap()
    }

    /// A value event for `text`.
    fn value(text: &str) -> InputEvent {
        InputEvent::Value(raw(text), HeldInput::untracked())
    }

    #[tokio::test]
    async fn values_decode_in_order_and_a_clean_close_ends_without_error() {
        let (sender, receiver) = mpsc::channel(4);
        let mut stream = MethodStream::<i64>::new(receiver);
        sender
            .send(value(r#"{"className":"int","data":1}"#))
            .await
            .unwrap();
        sender
            .send(value(r#"{"className":"int","data":2}"#))
            .await
            .unwrap();
        drop(sender);
        assert_eq!(stream.next().await, Some(1));
        assert_eq!(stream.next().await, Some(2));
        assert_eq!(stream.next().await, None);
        assert_eq!(stream.error(), None);
    }

    #[tokio::test]
    async fn a_bad_value_an_exception_or_an_error_close_ends_with_the_reason() {
        let (sender, receiver) = mpsc::channel(4);
        let mut stream = MethodStream::<i64>::new(receiver);
        sender
            .send(value(r#"{"className":"String","data":"x"}"#))
            .await
            .unwrap();
        assert_eq!(stream.next().await, None);
        assert!(matches!(stream.error(), Some(InputError::Decode(why)) if why.contains("int")));

        let (sender, receiver) = mpsc::channel(4);
        let mut stream = MethodStream::<i64>::new(receiver);
        sender
            .send(InputEvent::Exception(raw(
                r#"{"className":"Oops","data":{"a":1}}"#,
            )))
            .await
            .unwrap();
        assert_eq!(stream.next().await, None);
        assert_eq!(
            stream.error(),
            Some(&InputError::Exception {
                class_name: "Oops".into(),
                data: r#"{"a":1}"#.into()
            })
        );

        let (sender, receiver) = mpsc::channel(4);
        let mut stream = MethodStream::<Option<i64>>::new(receiver);
        sender
            .send(value(r#"{"className":"null","data":null}"#))
            .await
            .unwrap();
        sender.send(InputEvent::ClosedWithError).await.unwrap();
        assert_eq!(stream.next().await, Some(None));
        assert_eq!(stream.next().await, None);
        assert_eq!(stream.error(), Some(&InputError::ClosedWithError));
    }
}
