use streampod::{endpoint, Session};

streampod::__doc_models!();

struct Api;

#[endpoint]
impl Api {
    pub async fn tuple(&self, (a, b): (i64, i64)) -> i64 {
        a + b
    }
    pub async fn borrowed(&self, name: &str) -> usize {
        name.len()
    }
    pub async fn late_session(&self, a: i64, session: &Session<Protocol>) -> i64 {
        let _ = session;
        a
    }
    pub async fn generic<T>(&self, a: i64) -> i64 {
        a
    }
}

fn main() {}
