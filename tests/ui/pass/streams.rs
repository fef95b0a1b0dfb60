use std::pin::Pin;

use futures_util::stream::{self, BoxStream, StreamExt};
use futures_util::Stream;
use streampod::{endpoint, EndpointError, MethodStream, Session};

streampod::__doc_models!();

struct Api;

#[endpoint]
impl Api {
    pub async fn plain(&self) -> impl Stream<Item = ChatMessage> {
        stream::empty()
    }
    pub async fn with_session(
        &self,
        session: &Session<Protocol>,
        channel: String,
    ) -> impl Stream<Item = ChatMessage> + Send + '_ {
        let _ = (session, channel);
        stream::empty()
    }
    pub async fn fallible_items(&self) -> impl Stream<Item = Result<Option<i64>, EndpointError>> {
        stream::empty()
    }
    pub async fn refused(&self) -> Result<impl Stream<Item = Vec<String>>, EndpointError> {
        Ok(stream::empty())
    }
    pub async fn boxed(&self) -> BoxStream<'static, i64> {
        stream::iter([1]).boxed()
    }
    pub async fn pinned(&self) -> Pin<Box<dyn Stream<Item = i64> + Send>> {
        Box::pin(stream::iter([1]))
    }
    pub async fn echo(&self, values: MethodStream<i64>) -> MethodStream<i64> {
        values
    }
    pub async fn total(&self, values: MethodStream<i64>, start: i64) -> i64 {
        values.fold(start, |sum, n| async move { sum + n }).await
    }
    pub async fn plain_http(&self, a: i64) -> i64 {
        a
    }
}

fn main() {}
