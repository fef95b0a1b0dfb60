use streampod::endpoint;

struct Api;

struct Secret;

#[endpoint]
impl Api {
    pub async fn take(&self, secret: Secret) -> i64 {
        let _ = secret;
        1
    }
    pub async fn give(&self) -> Secret {
        Secret
    }
    pub async fn fail(&self) -> Result<i64, String> {
        Ok(1)
    }
}

fn main() {}
