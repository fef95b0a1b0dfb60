// Every supported method shape compiles.
use std::collections::HashMap;

use streampod::{endpoint, EndpointError, MethodError, Session};

streampod::__doc_models!();

struct Shapes;

#[endpoint(require_login, scopes("user"))]
impl Shapes {
    pub async fn unit(&self) {}
    pub async fn plain(&self, a: i64) -> i64 {
        a
    }
    pub async fn with_session(&self, session: &Session<Protocol>, name: String) -> Result<String, EndpointError> {
        Ok(format!("{name} {}", session.endpoint()))
    }
    #[method(scopes("admin"))]
    pub async fn containers(&self, list: Vec<Option<f64>>, map: HashMap<String, Vec<bool>>) -> Result<i64, MethodError> {
        Ok((list.len() + map.len()) as i64)
    }
    pub async fn models(&self, message: ChatMessage, r#type: Option<String>) -> ChatMessage {
        let _ = r#type;
        message
    }
    fn helper(&self) -> i64 {
        1
    }
}

struct NoSession;

// Without a `&Session<P>` argument the methods serve any protocol.
#[endpoint]
impl NoSession {
    pub async fn ping(&self) -> String {
        String::from("pong")
    }
}

fn main() {
    let _ = Shapes.helper();
    let _ = streampod::Server::<Protocol>::builder().methods("shapes", Shapes).methods("plain", NoSession);
}
