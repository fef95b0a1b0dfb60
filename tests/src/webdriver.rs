//! A minimal W3C WebDriver client for driving Debian's headless Chromium through
//! `chromedriver`, for end-to-end tests of the browser page.

// Test support: a failed expectation panics with a message, like an assertion.
#![allow(clippy::missing_panics_doc, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::Method;
use serde_json::{json, Value};

use crate::http::request;

/// The Chromium binary Debian's `chromium` package installs.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The driver Debian's `chromium-driver` package installs.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running `chromedriver`, stopped when dropped together with the browsers it started
/// (they share its process group, which is signalled by its ID: a test that fails
/// before `quit` leaves no Chromium behind).
#[derive(Debug)]
pub struct Driver {
    process: Child,
    addr: SocketAddr,
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port and waits until it is ready.
    pub async fn start() -> Self {
        for path in [CHROMIUM, CHROMEDRIVER] {
            assert!(
                std::path::Path::new(path).exists(),
                "{path} is missing: install Debian's chromium and chromium-driver (tests/run-all.sh does)"
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let process = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            // A process group of its own, which its browsers join.
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Self {
            process,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            if tokio::net::TcpStream::connect(driver.addr).await.is_ok() {
                let status = request(driver.addr, Method::GET, "/status", "", &[]).await;
                if status.body["value"]["ready"] == json!(true) {
                    return driver;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a headless browser with a fresh profile.
    pub async fn browser(&self) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", format!("--user-data-dir={}", profile.path().display()),
                ],
            },
        }}});
        let answer = request(
            self.addr,
            Method::POST,
            "/session",
            &capabilities.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
        let session = answer.body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {}", answer.body))
            .to_owned();
        Browser {
            driver: self.addr,
            session,
            profile,
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The group's ID is chromedriver's PID: its browsers go with it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.process.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

/// One browser session.
#[derive(Debug)]
pub struct Browser {
    driver: SocketAddr,
    session: String,
    profile: tempfile::TempDir,
}

impl Browser {
    async fn command(&self, method: Method, path: &str, body: Value) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let answer = request(
            self.driver,
            method,
            &path,
            &body.to_string(),
            &[("content-type", "application/json")],
        )
        .await;
        assert!(
            answer.status.is_success(),
            "WebDriver {path} failed: {}",
            answer.body
        );
        answer.body["value"].clone()
    }

    /// Loads `url`.
    pub async fn open(&self, url: &str) {
        self.command(Method::POST, "/url", json!({"url": url}))
            .await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .command(
                Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_owned()
    }

    /// Replaces the text of the input `css`.
    pub async fn fill(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.command(
            Method::POST,
            &format!("/element/{element}/clear"),
            json!({}),
        )
        .await;
        self.command(
            Method::POST,
            &format!("/element/{element}/value"),
            json!({"text": text}),
        )
        .await;
    }

    /// Clicks `css`.
    pub async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.command(
            Method::POST,
            &format!("/element/{element}/click"),
            json!({}),
        )
        .await;
    }

    /// The browser's profile directory (its `--user-data-dir`).
    pub fn profile_dir(&self) -> &std::path::Path {
        self.profile.path()
    }

    /// Runs `script` in the page; what it returns.
    pub async fn execute(&self, script: &str) -> Value {
        self.command(
            Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// The visible text of `css`.
    pub async fn text(&self, css: &str) -> String {
        let script = json!({"script": "return document.querySelector(arguments[0]).innerText;", "args": [css]});
        self.command(Method::POST, "/execute/sync", script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Waits (at most 20 s) until the text of `css` satisfies `check`.
    pub async fn wait_for_text(
        &self,
        css: &str,
        what: &str,
        check: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text(css).await;
            if check(&text) {
                return text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}; {css} shows {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Ends the session (closes the browser).
    pub async fn quit(self) {
        let path = format!("/session/{}", self.session);
        request(self.driver, Method::DELETE, &path, "", &[]).await;
    }
}
