//! A person approves the payment in a real browser: headless Chromium, driven over WebDriver
//! (chromedriver), opens the authorization URL, reads the amount, presses Approve, and the
//! checkout completes.
//!
//! Needs the Debian packages `chromium` and `chromium-driver` (`.ci/run` installs them).
//! Outside CI the test is skipped when they are missing; under `CI=true` it fails instead.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::app::spawn_app;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn browser_available() -> bool {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI must run the browser test: install the chromium and chromium-driver packages"
        );
        eprintln!("skipping: {CHROMIUM} or {CHROMEDRIVER} not installed");
    }
    present
}

async fn start_driver() -> (Driver, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let url = format!("http://127.0.0.1:{port}");
    for _ in 0..100 {
        if reqwest::get(format!("{url}/status")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (Driver(child), url)
}

/// A headless Chromium session with a profile of its own (removed by [`Session::end`]).
struct Session {
    browser: fantoccini::Client,
    profile: std::path::PathBuf,
    _driver: Driver,
}

impl Session {
    async fn start(name: &str) -> Session {
        let (driver, driver_url) = start_driver().await;
        let profile =
            std::env::temp_dir().join(format!("sacp-chromium-{name}-{}", std::process::id()));
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--disable-quic", format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        let browser = ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&driver_url)
            .await
            .expect("a browser session");
        Session {
            browser,
            profile,
            _driver: driver,
        }
    }

    async fn end(self) {
        let _ = self.browser.close().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

#[tokio::test]
async fn the_docs_render_under_their_content_security_policy() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let session = Session::start("docs").await;
    let browser = &session.browser;
    let outcome = async {
        browser.goto(&format!("{}/docs/", app.url)).await?;
        // Swagger UI renders the operations only if its scripts ran and fetched the document
        // under the page's policy (scripts, styles and requests to the gateway itself).
        browser
            .wait()
            .at_most(Duration::from_secs(20))
            .for_element(Locator::Css(".opblock"))
            .await?;
        let count = browser
            .execute(
                "return document.querySelectorAll('.opblock').length",
                vec![],
            )
            .await?;
        Ok::<_, fantoccini::error::CmdError>(count)
    }
    .await;
    session.end().await;
    let count = outcome.expect("the docs render in a browser");
    assert!(
        count.as_u64().unwrap_or(0) >= 20,
        "operations shown: {count}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_person_approves_in_headless_chromium_and_the_checkout_completes() {
    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let id = app.ready_checkout(1).await;
    let auth = app.complete_as_guest(&id).await;

    let session = Session::start("approve").await;
    let browser = &session.browser;
    let outcome = async {
        browser.goto(&auth.str("/authorization_url")).await?;
        let amount = browser.find(Locator::Css("#amount")).await?.text().await?;
        let merchant = browser
            .find(Locator::Css("#merchant"))
            .await?
            .text()
            .await?;
        let items = browser.find(Locator::Css("#items")).await?.text().await?;
        browser
            .find(Locator::Css("button[name=decision][value=approve]"))
            .await?
            .click()
            .await?;
        let result = browser
            .wait()
            .for_element(Locator::Css("#result"))
            .await?
            .text()
            .await?;
        Ok::<_, fantoccini::error::CmdError>((amount, merchant, items, result))
    }
    .await;
    session.end().await;
    let (amount, merchant, items, result) = outcome.expect("the approval page works in a browser");
    assert_eq!(amount, "CA$21.46", "the person sees the exact amount");
    assert!(merchant.contains("SACP Coffee Roasters"), "{merchant}");
    assert!(items.contains("Ethiopian Yirgacheffe"), "{items}");
    assert!(result.contains("approved"), "{result}");

    let done = app.poll_until_settled(&auth.str("/poll_endpoint")).await;
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    assert_eq!(
        app.get(&format!("/checkout/{id}")).await.body["status"],
        "completed"
    );
    app.stop().await;
}
