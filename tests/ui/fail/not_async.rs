use streampod::endpoint;

struct Api;

#[endpoint]
impl Api {
    pub fn hello(&self) -> i64 {
        1
    }
}

fn main() {}
