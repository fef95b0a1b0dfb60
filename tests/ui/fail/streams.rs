use futures_util::Stream;
use streampod::{endpoint, MethodStream};

streampod::__doc_models!();

struct NotWire;

struct Api;

#[endpoint]
impl Api {
    pub async fn no_item(&self) -> impl Stream {
        futures_util::stream::empty::<i64>()
    }
    pub async fn bare_input(&self, values: MethodStream) -> i64 {
        let _ = values;
        0
    }
    pub async fn half_result(&self) -> impl Stream<Item = Result<i64>> {
        futures_util::stream::empty()
    }
    pub async fn nested(&self) -> impl Stream<Item = Box<dyn Stream<Item = i64> + Send + Unpin>> {
        futures_util::stream::empty()
    }
}

struct Typed;

#[endpoint]
impl Typed {
    pub async fn no_wire_form(&self) -> impl Stream<Item = NotWire> {
        futures_util::stream::empty()
    }
    pub async fn no_wire_input(&self, values: MethodStream<NotWire>) -> i64 {
        let _ = values;
        0
    }
}

fn main() {}
