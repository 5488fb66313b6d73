//! A headless Chromium for the console's tests, driven over WebDriver (Debian's `chromium`
//! and `chromedriver`, installed by `scripts/install-chromium.sh`; nothing is downloaded).
//! The few WebDriver commands the tests need are plain JSON over HTTP, sent with reqwest.
//!
//! chromedriver runs in a process group of its own; the group (chromedriver and the browser
//! it started) is killed by its pid when the [`Browser`] is dropped, however the test ends.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use restock_process::{Supervised, wait_until};

use serde_json::{Value, json};

/// Where Debian puts the driver and the browser.
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";
/// W3C WebDriver's key for an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// One browser session.
pub struct Browser {
    /// chromedriver, in a process group of its own with the browser it starts; dropping it
    /// kills the group.
    driver: Supervised,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless Chromium; `None` (with a message) when they are not
    /// installed outside CI. Under CI a missing browser fails the test.
    pub async fn start() -> Option<Browser> {
        if !Path::new(CHROMEDRIVER).exists() || !Path::new(CHROMIUM).exists() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the browser tests: run scripts/install-chromium.sh"
            );
            eprintln!("SKIPPED: no {CHROMIUM} / {CHROMEDRIVER} (run scripts/install-chromium.sh)");
            return None;
        }
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = crate::process::free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let profile = tempfile::tempdir().unwrap();
        let mut command = Command::new(CHROMEDRIVER);
        command
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.path().display()));
        let driver = Supervised::spawn_in_own_group(
            "chromedriver",
            command,
            &profile.path().join("chromedriver.out"),
        )
        .expect("starting chromedriver");
        let mut browser = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
            _profile: profile,
        };
        let status = format!("{}/status", browser.base);
        let http = browser.http.clone();
        let ready = wait_until(
            "chromedriver answering /status",
            Duration::from_secs(30),
            std::slice::from_mut(&mut browser.driver),
            || async {
                match http.get(&status).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("status {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            },
        )
        .await;
        if let Err(e) = ready {
            panic!("{e}");
        }
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--ignore-certificate-errors",
            "--window-size=1400,1100",
            &format!("--user-data-dir={}", browser._profile.path().display()),
        ];
        let session = browser
            .http
            .post(format!("{}/session", browser.base))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            }}}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap();
        let id = session["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {session}"))
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        Some(browser)
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        if let Some(error) = answer["value"]["error"].as_str() {
            panic!("WebDriver {path}: {error}: {}", answer["value"]["message"]);
        }
        answer["value"].clone()
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// Runs `script` (a function body; `arguments` holds `args`) in the page; its return value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
        .await
    }

    /// The first element matching the CSS `selector`, if any.
    pub async fn find(&self, selector: &str) -> Option<Element> {
        let found = self
            .execute(
                "const e = document.querySelector(arguments[0]); return e ? [e] : [];",
                json!([selector]),
            )
            .await;
        found
            .get(0)
            .and_then(|e| e[ELEMENT].as_str())
            .map(|id| Element(id.to_owned()))
    }

    /// Waits up to `timeout` for an element matching `selector`.
    pub async fn wait_for(&self, selector: &str, timeout: Duration) -> Element {
        let found = wait_until(
            &format!("{selector:?} on the page"),
            timeout,
            &mut [],
            || async { self.find(selector).await.ok_or("not there") },
        )
        .await;
        match found {
            Ok(element) => element,
            Err(e) => panic!(
                "{e}; the page says:\n{}",
                self.text_of("body").await.unwrap_or_default()
            ),
        }
    }

    /// The visible text of the first element matching `selector`.
    pub async fn text_of(&self, selector: &str) -> Option<String> {
        self.execute(
            "const e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
            json!([selector]),
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// Clicks `element`.
    pub async fn click(&self, element: &Element) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/click", element.0),
            Some(json!({})),
        )
        .await;
    }

    /// Types `text` into `element`.
    pub async fn type_into(&self, element: &Element, text: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/element/{}/value", element.0),
            Some(json!({"text": text})),
        )
        .await;
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        use base64::Engine;
        let png = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap()
    }

    /// Ends the session (the browser quits) and stops chromedriver.
    pub async fn quit(mut self) {
        let _ = self
            .http
            .delete(&self.base)
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        // chromedriver's group holds the browser too: both go.
        self.driver.kill();
    }
}
