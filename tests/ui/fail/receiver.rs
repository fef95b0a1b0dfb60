use streampod::endpoint;

struct Api;

#[endpoint]
impl Api {
    pub async fn no_self(a: i64) -> i64 {
        a
    }
    pub async fn by_value(self) -> i64 {
        1
    }
    pub async fn by_mut(&mut self) -> i64 {
        1
    }
}

fn main() {}
