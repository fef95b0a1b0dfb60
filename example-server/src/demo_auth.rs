//! Demo authentication: a fixed table of tokens, given on the command line
//! (`--token TOKEN=USER[:scope+scope]`, repeatable). There is no default token: without
//! any, every session is anonymous, so nobody can act as a user unless the operator
//! said so. With `--jwt-secret`, JSON Web Tokens signed with that secret (HS256) sign in
//! their `sub` as well (`streampod::auth::Jwt`), with their expiry. For real deployments
//! implement `AuthenticationHandler` against your users, or use `Jwt` with your issuer's
//! keys.

use std::collections::HashMap;

use streampod::auth::{AuthInfo, AuthenticationHandler, Jwt, Refusal, Scope};

/// Tokens and who they sign in as, and the JSON Web Tokens accepted besides.
#[derive(Debug, Clone, Default)]
pub struct DemoTokens {
    tokens: HashMap<String, AuthInfo>,
    jwt: Option<Jwt>,
}

impl DemoTokens {
    /// Adds a token from `TOKEN=USER` or `TOKEN=USER:scope+scope`.
    ///
    /// # Errors
    ///
    /// A message saying what is wrong with `spec`.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let (token, who) = spec.split_once('=').ok_or_else(|| {
            format!("token '{spec}' must look like TOKEN=USER or TOKEN=USER:scope+scope")
        })?;
        let (user, scopes) = who.split_once(':').unwrap_or((who, ""));
        if token.len() < 8 {
            return Err(format!(
                "token for user '{user}' is too short: use at least 8 characters"
            ));
        }
        if user.is_empty() {
            return Err(format!("token '{spec}' names no user"));
        }
        let scopes = scopes
            .split(['+', ','])
            .filter(|s| !s.is_empty())
            .map(Scope::new);
        if self
            .tokens
            .insert(token.to_owned(), AuthInfo::new(user).with_scopes(scopes))
            .is_some()
        {
            return Err("the same token is given twice".into());
        }
        Ok(())
    }

    /// Adds the tokens of a file: one `TOKEN=USER[:scope+scope]` per line; blank lines
    /// and lines starting with `#` are skipped.
    ///
    /// # Errors
    ///
    /// The file cannot be read, or a line is not a token (with its line number).
    pub fn add_file(&mut self, path: &std::path::Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.add(line)
                .map_err(|e| format!("{}:{}: {e}", path.display(), index + 1))?;
        }
        Ok(())
    }

    /// Accepts JSON Web Tokens that `jwt` verifies too.
    pub fn accept_jwt(&mut self, jwt: Jwt) {
        self.jwt = Some(jwt);
    }

    /// How many tokens there are.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }
}

impl AuthenticationHandler for DemoTokens {
    async fn authenticate(&self, key: &str) -> Option<AuthInfo> {
        self.check(key).await.ok()
    }

    async fn check(&self, key: &str) -> Result<AuthInfo, Refusal> {
        if let Some(auth) = self.tokens.get(key) {
            return Ok(auth.clone());
        }
        match &self.jwt {
            Some(jwt) => jwt.check(key).await,
            None => Err(Refusal::NotAccepted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_sign_in_as_their_user_with_scopes() {
        let mut tokens = DemoTokens::default();
        tokens.add("ann-secret=1").unwrap();
        tokens.add("root-secret=99:admin+ops").unwrap();
        tokens.add("ops-secret=98:admin,ops").unwrap();
        let ann = tokens.authenticate("ann-secret").await.unwrap();
        assert_eq!(ann.user_id, "1");
        assert!(ann.scopes.is_empty());
        let root = tokens.authenticate("root-secret").await.unwrap();
        assert!(
            root.has_scope(&Scope::from_static("admin"))
                && root.has_scope(&Scope::from_static("ops"))
        );
        assert!(tokens.authenticate("guess").await.is_none());
    }

    #[test]
    fn token_files_skip_comments_and_name_bad_lines() {
        let dir = std::env::temp_dir().join(format!("streampod-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tokens.txt");
        std::fs::write(
            &path,
            "# demo users\nann-secret-1=1\n\nroot-secret-9=99:admin\n",
        )
        .unwrap();
        let mut tokens = DemoTokens::default();
        tokens.add_file(&path).unwrap();
        assert_eq!(tokens.len(), 2);
        std::fs::write(&path, "ann-secret-1=1\nbroken\n").unwrap();
        let error = DemoTokens::default().add_file(&path).unwrap_err();
        assert!(
            error.ends_with(
                ":2: token 'broken' must look like TOKEN=USER or TOKEN=USER:scope+scope"
            ),
            "{error}"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_specs_are_explained() {
        let mut tokens = DemoTokens::default();
        assert!(tokens.add("no-equals").unwrap_err().contains("TOKEN=USER"));
        assert!(tokens.add("short=1").unwrap_err().contains("too short"));
        assert!(tokens
            .add("long-enough=")
            .unwrap_err()
            .contains("names no user"));
        tokens.add("long-enough=1").unwrap();
        assert!(tokens.add("long-enough=2").unwrap_err().contains("twice"));
    }
}
