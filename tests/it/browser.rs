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

/// A stub MCP Apps host: the widget in a sandboxed frame, the host side of the bridge in
/// JavaScript, and tool calls handed to the test (which sends them to the gateway's `/mcp`).
fn stub_host(widget_html: &str) -> String {
    // As a JavaScript string inside <script>: `</` would end the script element.
    let html = serde_json::to_string(widget_html)
        .unwrap()
        .replace("</", "<\\/");
    format!(
        r#"<!doctype html><html><body>
<iframe id="widget" sandbox="allow-scripts" style="width:480px;height:720px"></iframe>
<script>
  window.pending = [];
  window.initialized = false;
  const frame = document.getElementById("widget");
  const post = (message) => frame.contentWindow.postMessage(message, "*");
  window.addEventListener("message", (event) => {{
    if (event.source !== frame.contentWindow) return;
    const m = event.data;
    if (m.method === "ui/initialize") {{
      post({{jsonrpc: "2.0", id: m.id, result: {{protocolVersion: "2026-01-26",
        hostInfo: {{name: "stub-host", version: "1"}}, hostCapabilities: {{serverTools: {{}}}},
        hostContext: {{}}}}}});
    }} else if (m.method === "ui/notifications/initialized") {{
      window.initialized = true;
    }} else if (m.method === "tools/call") {{
      window.pending.push(m);
    }}
  }});
  window.sendResult = (result) => post({{jsonrpc: "2.0", method: "ui/notifications/tool-result", params: result}});
  window.answer = (id, result) => post({{jsonrpc: "2.0", id: id, result: result}});
  frame.srcdoc = {html};
</script></body></html>"#
    )
}

#[tokio::test]
async fn the_approval_widget_follows_a_payment_from_waiting_to_completed() {
    use crate::mcp_client::{Era, McpClient};

    if !browser_available() {
        return;
    }
    let app = spawn_app().await;
    let client = McpClient::new(&app, Some(crate::app::TEST_KEY), Era::Stateless);
    client.start().await;
    let resource = client
        .request(
            "resources/read",
            Some(json!({"uri": sacp_mcp::widget::URI})),
        )
        .await;
    let widget = resource["contents"][0]["text"].as_str().unwrap().to_owned();
    let created = client
        .call(
            "create_checkout",
            json!({"items": [{"product_id": sacp_sim::catalog::ETHIOPIAN_YIRGACHEFFE, "quantity": 1}]}),
        )
        .await;
    let id = created["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let details = crate::app::seed_details();
    client
        .call(
            "update_checkout",
            json!({"checkout_id": id, "buyer": details["buyer"], "fulfillment": details["fulfillment"]}),
        )
        .await;
    let payment = client
        .call("request_payment", json!({"checkout_id": id}))
        .await;
    let link = payment["structuredContent"]["authorization_url"]
        .as_str()
        .unwrap()
        .to_owned();

    let page = std::env::temp_dir().join(format!("sacp-widget-host-{}.html", std::process::id()));
    std::fs::write(&page, stub_host(&widget)).unwrap();
    let session = Session::start("widget").await;
    let browser = &session.browser;
    let outcome = async {
        browser.goto(&format!("file://{}", page.display())).await?;
        browser
            .wait()
            .at_most(Duration::from_secs(10))
            .for_element(Locator::Css("#widget"))
            .await?;
        // Mounted, before any data: the waiting state.
        for _ in 0..50 {
            if browser.execute("return window.initialized", vec![]).await? == json!(true) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        browser.enter_frame(0).await?;
        let mounted = browser.find(Locator::Css("#status")).await?.text().await?;
        let mounted_state = browser
            .find(Locator::Css("#app"))
            .await?
            .attr("data-state")
            .await?;
        browser.enter_parent_frame().await?;
        browser
            .execute("window.sendResult(arguments[0])", vec![payment.clone()])
            .await?;
        browser.enter_frame(0).await?;
        let amount = browser.find(Locator::Css("#amount")).await?.text().await?;
        let merchant = browser
            .find(Locator::Css("#merchant"))
            .await?
            .text()
            .await?;
        let items = browser.find(Locator::Css("#items")).await?.text().await?;
        let code = browser.find(Locator::Css("#code")).await?.text().await?;
        let href = browser
            .find(Locator::Css("#link"))
            .await?
            .attr("href")
            .await?;
        let qr = browser
            .execute("return document.querySelectorAll('#qr svg').length", vec![])
            .await?;
        browser.enter_parent_frame().await?;

        // The person approves; the widget asks the host for the status until it is final.
        app.decide_in_wallet(&link, true).await;
        let mut shown = String::new();
        let mut calls = 0;
        for _ in 0..150 {
            let pending = browser
                .execute("return window.pending.splice(0)", vec![])
                .await?;
            for call in pending.as_array().cloned().unwrap_or_default() {
                assert_eq!(call["params"]["name"], "get_payment_status", "{call}");
                calls += 1;
                let result = client
                    .request("tools/call", Some(call["params"].clone()))
                    .await;
                browser
                    .execute(
                        "window.answer(arguments[0], arguments[1])",
                        vec![call["id"].clone(), result],
                    )
                    .await?;
            }
            browser.enter_frame(0).await?;
            let state = browser
                .find(Locator::Css("#app"))
                .await?
                .attr("data-state")
                .await?;
            shown = browser.find(Locator::Css("#status")).await?.text().await?;
            browser.enter_parent_frame().await?;
            if state.as_deref() == Some("completed") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok::<_, fantoccini::error::CmdError>((
            mounted,
            mounted_state,
            amount,
            merchant,
            items,
            code,
            href,
            qr,
            shown,
            calls,
        ))
    }
    .await;
    session.end().await;
    let _ = std::fs::remove_file(&page);
    let (mounted, mounted_state, amount, merchant, items, code, href, qr, shown, calls) =
        outcome.expect("the widget runs in a browser");
    assert_eq!(mounted_state.as_deref(), Some("waiting"));
    assert!(mounted.contains("Waiting"), "{mounted}");
    assert_eq!(amount, "CA$21.46");
    assert!(merchant.contains("SACP Coffee Roasters"), "{merchant}");
    assert!(items.contains("Ethiopian Yirgacheffe"), "{items}");
    assert_eq!(
        code,
        payment["structuredContent"]["user_code"].as_str().unwrap()
    );
    assert_eq!(href.as_deref(), Some(link.as_str()));
    assert_eq!(qr, json!(1), "the QR code is drawn");
    assert!(calls >= 1, "the widget asked the host for the status");
    let order = app.sims.store.orders();
    assert_eq!(order.len(), 1);
    assert!(shown.contains(&order[0].order_id), "{shown}");
    app.stop().await;
}
