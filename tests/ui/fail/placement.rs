use streampod::endpoint;

struct Api;

trait Named {
    fn name(&self) -> i64;
}

#[endpoint]
impl Named for Api {
    fn name(&self) -> i64 {
        1
    }
}

#[endpoint]
fn free_function() {}

#[endpoint(login)]
impl Api {
    pub async fn hello(&self) -> i64 {
        1
    }
}

fn main() {}
