//! What ended is retired after the configured retention, in both storage modes, and nothing
//! else: open checkouts and the audit trail (kept longer) stay.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use sacp_sim::faults::Faults;

use crate::admin::admin;
use crate::app::{TestApp, settings, spawn_app_with};
use crate::database::TestDatabase;

async fn retiring_app(database_url: Option<String>) -> TestApp {
    let mut settings = settings();
    settings.database_url = database_url.map(Into::into);
    settings.retention_secs = 1;
    settings.audit_retention_secs = 3_600;
    spawn_app_with(
        settings,
        Faults {
            poll_interval_secs: Some(1),
            ..Faults::default()
        },
    )
    .await
}

async fn ended_checkouts_are_retired_and_open_ones_kept(app: TestApp) {
    let paid = app.ready_checkout(1).await;
    let auth = app.complete_as_guest(&paid).await;
    app.decide_in_wallet(&auth.str("/authorization_url"), true)
        .await;
    let done = app.poll_until_settled(&auth.str("/poll_endpoint")).await;
    assert_eq!(done.body["status"], "completed", "{}", done.body);
    let cancelled = app.create_checkout(1).await;
    let answer = app
        .call(Method::POST, &format!("/checkout/{cancelled}/cancel"), None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let open = app.ready_checkout(2).await;

    // Retention 1 s: a round every second retires both within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    for id in [&paid, &cancelled] {
        loop {
            let read = app.get(&format!("/checkout/{id}")).await;
            if read.status == StatusCode::NOT_FOUND {
                read.assert_problem(404, "not_found");
                break;
            }
            assert_eq!(read.status, StatusCode::OK, "{}", read.body);
            assert!(Instant::now() < deadline, "{id} still kept: {}", read.body);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let gone = app.get(&auth.str("/poll_endpoint")).await;
    assert_eq!(
        gone.status,
        StatusCode::NOT_FOUND,
        "the authorization went too: {}",
        gone.body
    );
    let kept = app.get(&format!("/checkout/{open}")).await;
    assert_eq!(
        kept.status,
        StatusCode::OK,
        "an open checkout stays until it expires"
    );

    let audit = admin(&app, Method::GET, "/admin/audit?limit=100", None).await;
    assert_eq!(audit.status, StatusCode::OK);
    let audit = &audit.body;
    assert!(
        audit.to_string().contains(&cancelled),
        "the audit trail outlives the checkouts: {audit}"
    );
    app.stop().await;
}

#[tokio::test]
async fn embedded_storage_retires_what_ended() {
    ended_checkouts_are_retired_and_open_ones_kept(retiring_app(None).await).await;
}

#[tokio::test]
async fn postgres_retires_what_ended() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    ended_checkouts_are_retired_and_open_ones_kept(retiring_app(Some(db.url.clone())).await).await;
}
