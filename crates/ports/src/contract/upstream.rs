//! Contract suites for the [`Store`] and [`Wallet`] ports.

use std::time::Duration;

use async_trait::async_trait;
use sacp_domain::validation::ItemInput;
use sacp_domain::{DeviceCode, Items, Money, ProductId, StoreSessionId};

use super::{buyer, shipping};
use crate::error::UpstreamError;
use crate::store::{
    CompletionOutcome, ProductQuery, SearchQuery, SessionPatch, StoreSessionStatus,
};
use crate::token::BearerToken;
use crate::wallet::{
    DeviceAuthorizationRequest, DevicePoll, Introspection, PaymentTokenOutcome,
    PaymentTokenRequest, StepUpStatus,
};
use crate::{Store, Wallet};

/// Which upstream a fault is injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upstream {
    /// The store.
    Store,
    /// The wallet.
    Wallet,
}

/// A way to make an upstream misbehave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Behave.
    None,
    /// Answer every API call with HTTP 503.
    ServerErrors,
    /// Answer every API call with a body that is not JSON.
    MalformedBodies,
    /// Answer every API call later than the client's timeout.
    SlowerThanTimeout,
    /// Wallet: answer pending device polls with `slow_down`.
    SlowDown,
    /// Wallet: new device codes live this many seconds.
    ShortExpiry(u32),
    /// Wallet: the person has no active card.
    NoPaymentMethod,
    /// Wallet: the card issuer fails (payment tokens 502, approved step-ups without token).
    PaymentProviderError,
    /// Wallet: the gateway's client is suspended.
    SuspendedClient,
}

/// Known facts of the catalog the suites run against.
#[derive(Debug, Clone)]
pub struct CatalogFixture {
    /// A product that can be bought.
    pub product_id: ProductId,
    /// Its price.
    pub product_price: Money,
    /// A product that exists but cannot be bought.
    pub unavailable_product_id: ProductId,
    /// A search term and how many products it finds.
    pub search_term: String,
    /// Number of hits for `search_term`.
    pub search_hits: usize,
    /// A category and how many products it has.
    pub category: String,
    /// Number of products in `category`.
    pub category_size: usize,
    /// Total number of products.
    pub catalog_size: usize,
}

/// What the suites need besides the ports: acting as the person and breaking the upstreams.
#[async_trait]
pub trait UpstreamHarness: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn Store;
    /// The wallet under test.
    fn wallet(&self) -> &dyn Wallet;
    /// The catalog the store serves.
    fn catalog(&self) -> CatalogFixture;
    /// A user access token with the `purchase` scope and this per-transaction limit.
    async fn user_token(&self, per_transaction_limit: Option<Money>) -> BearerToken;
    /// Approves or rejects a device authorization as the person would.
    async fn decide_device(&self, user_code: &str, approve: bool);
    /// Approves or rejects a step-up as the person would.
    async fn decide_step_up(&self, step_up_id: &str, approve: bool);
    /// Injects a fault into one upstream (replacing any earlier one).
    async fn set_fault(&self, upstream: Upstream, fault: Fault);
}

fn items(product: &ProductId, quantity: i64) -> Items {
    Items::parse(&[ItemInput {
        product_id: Some(product.as_str().to_owned()),
        quantity: Some(quantity),
    }])
    .unwrap()
}

/// Runs every [`Store`] rule.
pub async fn store_contract(h: &dyn UpstreamHarness) {
    catalog_rules(h).await;
    session_rules(h).await;
    completion_rules(h).await;
}

async fn catalog_rules(h: &dyn UpstreamHarness) {
    let store = h.store();
    let fixture = h.catalog();

    let page = store
        .list_products(&ProductQuery {
            category: None,
            limit: 2,
            offset: 0,
        })
        .await
        .expect("list products");
    assert_eq!(
        page.products.len(),
        2,
        "a page holds at most `limit` products"
    );
    assert_eq!(
        page.next_offset,
        Some(2),
        "a partial page points at the next one"
    );
    assert_eq!(
        page.total,
        Some(u32::try_from(fixture.catalog_size).unwrap())
    );

    let last = store
        .list_products(&ProductQuery {
            category: None,
            limit: 100,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(last.products.len(), fixture.catalog_size);
    assert_eq!(last.next_offset, None, "the last page has no next page");

    let category = store
        .list_products(&ProductQuery {
            category: Some(fixture.category.clone()),
            limit: 100,
            offset: 0,
        })
        .await
        .unwrap();
    assert_eq!(category.products.len(), fixture.category_size);
    assert!(
        category
            .products
            .iter()
            .all(|p| p.categories.contains(&fixture.category))
    );

    let hits = store
        .search_products(&SearchQuery {
            q: fixture.search_term.clone(),
            limit: 20,
            offset: 0,
        })
        .await
        .expect("search");
    assert_eq!(hits.products.len(), fixture.search_hits);

    let empty = store
        .search_products(&SearchQuery {
            q: String::new(),
            limit: 20,
            offset: 0,
        })
        .await;
    assert!(
        matches!(empty, Err(UpstreamError::Rejected { .. })),
        "search needs q: {empty:?}"
    );

    let product = store
        .product(&fixture.product_id)
        .await
        .expect("get product");
    assert_eq!(
        product.price, fixture.product_price,
        "prices convert exactly"
    );
    assert!(product.available);
    let unavailable = store
        .product(&fixture.unavailable_product_id)
        .await
        .unwrap();
    assert!(!unavailable.available);

    let missing = store
        .product(&ProductId::parse("00000000-0000-0000-0000-000000000000").unwrap())
        .await;
    assert_eq!(missing, Err(UpstreamError::NotFound));

    let merchant = store.merchant().await.expect("merchant discovery");
    assert!(!merchant.id.is_empty() && !merchant.name.is_empty());
}

async fn session_rules(h: &dyn UpstreamHarness) {
    let store = h.store();
    let fixture = h.catalog();

    let refused = store
        .create_session(&items(&fixture.unavailable_product_id, 1), None, None)
        .await;
    assert_eq!(
        refused,
        Err(UpstreamError::ItemsUnavailable {
            product_ids: vec![fixture.unavailable_product_id.as_str().to_owned()]
        })
    );

    let session = store
        .create_session(&items(&fixture.product_id, 2), None, None)
        .await
        .expect("create session");
    assert_eq!(session.cart.lines().len(), 1);
    assert_eq!(
        session.cart.subtotal(),
        fixture.product_price.checked_mul(2).unwrap()
    );
    assert!(session.buyer.is_none() && session.fulfillment.is_none());
    assert!(matches!(
        session.status,
        StoreSessionStatus::CartBuilding | StoreSessionStatus::AwaitingBuyerInfo
    ));

    let read = store.session(&session.id).await.expect("get session");
    assert_eq!(read.cart, session.cart);

    let updated = store
        .update_session(
            &session.id,
            &SessionPatch {
                items: Some(items(&fixture.product_id, 1)),
                buyer: Some(buyer()),
                fulfillment: Some(shipping()),
            },
        )
        .await
        .expect("update session");
    assert_eq!(updated.status, StoreSessionStatus::ReadyForPayment);
    assert_eq!(updated.buyer, Some(buyer()));
    assert_eq!(updated.fulfillment, Some(shipping()));
    assert_eq!(updated.cart.subtotal(), fixture.product_price);

    let unknown = StoreSessionId("sess_does_not_exist".into());
    assert_eq!(store.session(&unknown).await, Err(UpstreamError::NotFound));
    assert_eq!(
        store
            .update_session(&unknown, &SessionPatch::default())
            .await,
        Err(UpstreamError::NotFound)
    );

    store.cancel_session(&session.id).await.expect("cancel");
    let edit_after_cancel = store
        .update_session(
            &session.id,
            &SessionPatch {
                buyer: Some(buyer()),
                ..SessionPatch::default()
            },
        )
        .await;
    assert_eq!(
        edit_after_cancel,
        Err(UpstreamError::rejected("session_not_editable"))
    );
}

async fn ready_session(h: &dyn UpstreamHarness) -> crate::store::StoreSession {
    h.store()
        .create_session(
            &items(&h.catalog().product_id, 1),
            Some(&buyer()),
            Some(&shipping()),
        )
        .await
        .expect("create a ready session")
}

async fn completion_rules(h: &dyn UpstreamHarness) {
    let store = h.store();
    let wallet = h.wallet();
    let merchant = store.merchant().await.unwrap();
    let session = ready_session(h).await;
    assert_eq!(session.status, StoreSessionStatus::ReadyForPayment);
    let total = session.cart.total();
    let user = h.user_token(None).await;

    let request = PaymentTokenRequest {
        amount: total,
        merchant_id: merchant.id.clone(),
        merchant_name: Some(merchant.name.clone()),
        session_id: Some(session.id.0.clone()),
    };
    let PaymentTokenOutcome::Issued(token) =
        wallet.request_payment_token(&user, &request).await.unwrap()
    else {
        panic!("an unlimited token gets a payment token without step-up");
    };

    let bad_user = BearerToken::new("not-a-token");
    assert_eq!(
        store
            .complete_session(&session.id, &token.token, &bad_user)
            .await,
        Err(UpstreamError::Unauthorized)
    );
    let wrong = store
        .complete_session(&session.id, &BearerToken::new("pt_forged"), &user)
        .await;
    assert_eq!(wrong, Err(UpstreamError::rejected("invalid_payment_token")));

    let CompletionOutcome::Completed(order) = store
        .complete_session(&session.id, &token.token, &user)
        .await
        .expect("complete")
    else {
        panic!("a valid payment token completes the session");
    };
    assert!(!order.order_id.is_empty() && !order.transaction_id.is_empty());

    let again = store
        .complete_session(&session.id, &token.token, &user)
        .await;
    assert!(
        matches!(again, Err(UpstreamError::Rejected { .. })),
        "a session completes at most once: {again:?}"
    );
    let completed = store.session(&session.id).await.unwrap();
    assert_eq!(completed.status, StoreSessionStatus::Completed);
    assert_eq!(
        completed.order,
        Some(order.clone()),
        "the session records its order"
    );
    assert_eq!(
        store.cancel_session(&session.id).await,
        Err(UpstreamError::rejected("session_not_cancellable"))
    );

    let placed = store
        .order(&order.order_id, &user)
        .await
        .expect("read order");
    assert_eq!(placed.order_id, order.order_id);
    assert_eq!(placed.items.len(), 1);
    assert_eq!(
        placed.transaction_id.as_deref(),
        Some(order.transaction_id.as_str())
    );
    assert_eq!(
        store.order(&order.order_id, &bad_user).await,
        Err(UpstreamError::Unauthorized)
    );
    assert_eq!(
        store.order("ord_missing", &user).await,
        Err(UpstreamError::NotFound)
    );

    // A payment token is for one exact amount: another session's total is refused.
    let other = store
        .create_session(
            &items(&h.catalog().product_id, 3),
            Some(&buyer()),
            Some(&shipping()),
        )
        .await
        .unwrap();
    let PaymentTokenOutcome::Issued(small) =
        wallet.request_payment_token(&user, &request).await.unwrap()
    else {
        panic!("within limits");
    };
    assert_eq!(
        store.complete_session(&other.id, &small.token, &user).await,
        Err(UpstreamError::rejected("invalid_payment_token"))
    );
}

fn device_request(amount: Money) -> DeviceAuthorizationRequest {
    DeviceAuthorizationRequest {
        agent_name: "SACP Gateway (contract test)".into(),
        agent_description: Some("1 × test product".into()),
        scopes: vec!["purchase".into()],
        spending_limit: amount,
        buyer_email: None,
    }
}

/// Runs every [`Wallet`] rule.
pub async fn wallet_contract(h: &dyn UpstreamHarness) {
    device_rules(h).await;
    token_rules(h).await;
    payment_rules(h).await;
    observed_wallet_rules(h).await;
}

/// Waits until just after the start of a second, so that two calls made at once fall within
/// one second of the upstream's clock.
async fn start_of_a_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let into = now.subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(1_010 - into.min(1_000)))).await;
}

async fn device_rules(h: &dyn UpstreamHarness) {
    let wallet = h.wallet();
    let amount = h.catalog().product_price;
    let grant = wallet
        .start_device_authorization(&device_request(amount))
        .await
        .expect("start device authorization");
    assert!(
        grant.user_code.starts_with("WSIM-") && grant.user_code.len() == 11,
        "{}",
        grant.user_code
    );
    assert!(
        grant
            .verification_uri_complete
            .starts_with(&grant.verification_uri)
            && grant.verification_uri_complete.contains(&grant.user_code)
    );
    assert_eq!(grant.expires_in, 900);
    assert_eq!(grant.interval, Some(5));
    assert!(
        !format!("{grant:?}").contains(grant.device_code.expose()),
        "device codes never print"
    );

    assert_eq!(
        wallet.poll_device_token(&grant.device_code).await,
        Ok(DevicePoll::Pending)
    );
    h.decide_device(&grant.user_code, true).await;
    start_of_a_second().await;
    let Ok(DevicePoll::Approved(first)) = wallet.poll_device_token(&grant.device_code).await else {
        panic!("an approved device code yields a token");
    };
    assert!(first.scope.split(' ').any(|s| s == "purchase"));
    assert_eq!(
        wallet.poll_device_token(&grant.device_code).await,
        Err(UpstreamError::Unavailable),
        "observed: a second poll within the same second fails (tokens are second-granular)"
    );
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let Ok(DevicePoll::Approved(second)) = wallet.poll_device_token(&grant.device_code).await
    else {
        panic!("quirk: the device code is not consumed");
    };
    assert_ne!(
        first.access_token, second.access_token,
        "quirk: every poll mints a new token"
    );

    let rejected = wallet
        .start_device_authorization(&device_request(amount))
        .await
        .unwrap();
    h.decide_device(&rejected.user_code, false).await;
    assert_eq!(
        wallet.poll_device_token(&rejected.device_code).await,
        Ok(DevicePoll::Denied)
    );

    let unknown = wallet
        .poll_device_token(&DeviceCode::new("nope".into()))
        .await;
    assert_eq!(unknown, Err(UpstreamError::rejected("invalid_grant")));

    let mut bad = device_request(amount);
    bad.scopes = vec!["everything".into()];
    assert_eq!(
        wallet.start_device_authorization(&bad).await,
        Err(UpstreamError::rejected("invalid_scope"))
    );

    h.set_fault(Upstream::Wallet, Fault::ShortExpiry(1)).await;
    let short = wallet
        .start_device_authorization(&device_request(amount))
        .await
        .unwrap();
    let approved_short = wallet
        .start_device_authorization(&device_request(amount))
        .await
        .unwrap();
    h.set_fault(Upstream::Wallet, Fault::None).await;
    assert_eq!(short.expires_in, 1);
    h.decide_device(&approved_short.user_code, true).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        wallet.poll_device_token(&short.device_code).await,
        Ok(DevicePoll::Expired)
    );
    assert_eq!(
        wallet.poll_device_token(&approved_short.device_code).await,
        Ok(DevicePoll::Expired),
        "observed: expiry is checked before approval, so an approved code past its \
         lifetime cannot be collected any more"
    );
}

async fn token_rules(h: &dyn UpstreamHarness) {
    let wallet = h.wallet();
    let own = wallet
        .client_credentials()
        .await
        .expect("client credentials");
    assert!(own.expires_in > 0);

    let user = h.user_token(None).await;
    let Ok(Introspection::Active(info)) = wallet.introspect(&user).await else {
        panic!("a fresh user token is active");
    };
    assert!(!info.subject.is_empty());
    assert!(info.scopes.iter().any(|s| s == "purchase"));
    assert_eq!(
        wallet.introspect(&BearerToken::new("garbage")).await,
        Ok(Introspection::Inactive)
    );
}

async fn payment_rules(h: &dyn UpstreamHarness) {
    let wallet = h.wallet();
    let merchant = h.store().merchant().await.unwrap();
    let price = h.catalog().product_price;
    let request = PaymentTokenRequest {
        amount: price,
        merchant_id: merchant.id.clone(),
        merchant_name: Some(merchant.name.clone()),
        session_id: None,
    };
    let within = h.user_token(Some(price)).await;
    assert!(matches!(
        wallet.request_payment_token(&within, &request).await,
        Ok(PaymentTokenOutcome::Issued(_))
    ));

    let limited = h
        .user_token(Some(Money::from_minor(100, price.currency())))
        .await;
    let Ok(PaymentTokenOutcome::StepUpRequired(step_up)) =
        wallet.request_payment_token(&limited, &request).await
    else {
        panic!("over the per-transaction limit the wallet answers with a step-up (HTTP 200)");
    };
    assert_eq!(
        wallet.step_up_status(&limited, &step_up.step_up_id).await,
        Ok(StepUpStatus::Pending)
    );
    h.decide_step_up(&step_up.step_up_id, true).await;
    assert!(matches!(
        wallet.step_up_status(&limited, &step_up.step_up_id).await,
        Ok(StepUpStatus::Approved(_))
    ));

    let Ok(PaymentTokenOutcome::StepUpRequired(refused)) =
        wallet.request_payment_token(&limited, &request).await
    else {
        panic!("still over the limit");
    };
    h.decide_step_up(&refused.step_up_id, false).await;
    assert_eq!(
        wallet.step_up_status(&limited, &refused.step_up_id).await,
        Ok(StepUpStatus::Rejected)
    );
    assert_eq!(
        wallet.step_up_status(&limited, "stepup_unknown").await,
        Err(UpstreamError::NotFound)
    );

    assert_eq!(
        wallet
            .request_payment_token(&BearerToken::new("garbage"), &request)
            .await,
        Err(UpstreamError::Unauthorized)
    );
    // Not within the second of the last client-credentials request (a quirk of its own).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let gateway_only = wallet.client_credentials().await.unwrap().access_token;
    assert_eq!(
        wallet.request_payment_token(&gateway_only, &request).await,
        Err(UpstreamError::rejected("insufficient_scope"))
    );
}

/// The wallet as it was observed to behave (UPSTREAMS.md, "Observed on the real wallet"),
/// each row the gateway can meet.
async fn observed_wallet_rules(h: &dyn UpstreamHarness) {
    let wallet = h.wallet();
    let merchant = h.store().merchant().await.unwrap();
    let price = h.catalog().product_price;
    let request = PaymentTokenRequest {
        amount: price,
        merchant_id: merchant.id.clone(),
        merchant_name: Some(merchant.name.clone()),
        session_id: None,
    };

    // A notification is sent only to a wallet user's email.
    let mut known = device_request(price);
    known.buyer_email = Some(sacp_domain::validation::Email::parse("john@example.com").unwrap());
    assert!(
        wallet
            .start_device_authorization(&known)
            .await
            .unwrap()
            .notification_sent
    );
    let mut stranger = device_request(price);
    stranger.buyer_email =
        Some(sacp_domain::validation::Email::parse("nobody@example.com").unwrap());
    assert!(
        !wallet
            .start_device_authorization(&stranger)
            .await
            .unwrap()
            .notification_sent,
        "no notification for an email the wallet does not know"
    );

    // Unknown scopes next to a known one are dropped; alone they are refused.
    let mut extra = device_request(price);
    extra.scopes = vec!["purchase".into(), "admin".into()];
    assert!(wallet.start_device_authorization(&extra).await.is_ok());
    let mut only_unknown = device_request(price);
    only_unknown.scopes = vec!["admin".into()];
    assert_eq!(
        wallet.start_device_authorization(&only_unknown).await,
        Err(UpstreamError::rejected("invalid_scope"))
    );

    // Spending is never counted: one approval mints payment tokens again and again.
    let grant = wallet
        .start_device_authorization(&device_request(price))
        .await
        .unwrap();
    h.decide_device(&grant.user_code, true).await;
    let Ok(DevicePoll::Approved(approval)) = wallet.poll_device_token(&grant.device_code).await
    else {
        panic!("approved");
    };
    for _ in 0..2 {
        assert!(matches!(
            wallet
                .request_payment_token(&approval.access_token, &request)
                .await,
            Ok(PaymentTokenOutcome::Issued(_))
        ));
    }

    // No card: the wallet's 400 invalid_request "No payment methods available".
    h.set_fault(Upstream::Wallet, Fault::NoPaymentMethod).await;
    assert_eq!(
        wallet
            .request_payment_token(&approval.access_token, &request)
            .await,
        Err(UpstreamError::rejected("no_payment_method"))
    );
    h.set_fault(Upstream::Wallet, Fault::None).await;

    // Step-ups: the wallet's trigger types; readable with another token of the client; an
    // approval while the card issuer fails carries no token (transient).
    let limited = h
        .user_token(Some(Money::from_minor(100, price.currency())))
        .await;
    let Ok(PaymentTokenOutcome::StepUpRequired(step_up)) =
        wallet.request_payment_token(&limited, &request).await
    else {
        panic!("a step-up");
    };
    assert_eq!(step_up.reason.as_deref(), Some("per_transaction"));
    let other = h.user_token(None).await;
    assert_eq!(
        wallet.step_up_status(&other, &step_up.step_up_id).await,
        Ok(StepUpStatus::Pending),
        "observed: step-ups are visible to any token of the same wallet client"
    );
    h.decide_step_up(&step_up.step_up_id, true).await;
    h.set_fault(Upstream::Wallet, Fault::PaymentProviderError)
        .await;
    assert_eq!(
        wallet.step_up_status(&limited, &step_up.step_up_id).await,
        Ok(StepUpStatus::ApprovedWithoutToken)
    );
    assert_eq!(
        wallet.request_payment_token(&other, &request).await,
        Err(UpstreamError::Unavailable),
        "payment_provider_error is transient"
    );
    h.set_fault(Upstream::Wallet, Fault::None).await;
    assert!(matches!(
        wallet.step_up_status(&limited, &step_up.step_up_id).await,
        Ok(StepUpStatus::Approved(_))
    ));

    // A suspended client is refused as a client, not as a user.
    h.set_fault(Upstream::Wallet, Fault::SuspendedClient).await;
    assert_eq!(
        wallet.poll_device_token(&grant.device_code).await,
        Err(UpstreamError::rejected("invalid_client"))
    );
    assert_eq!(
        wallet.client_credentials().await.map(|_| ()),
        Err(UpstreamError::rejected("invalid_client"))
    );
    h.set_fault(Upstream::Wallet, Fault::None).await;

    // Two client-credentials requests within one second: the second fails, transiently.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    start_of_a_second().await;
    assert!(wallet.client_credentials().await.is_ok());
    assert_eq!(
        wallet.client_credentials().await.map(|_| ()),
        Err(UpstreamError::Unavailable)
    );

    // Revocation always succeeds, and ends that token only.
    wallet.revoke_token(&limited).await.expect("revoke");
    assert_eq!(
        wallet.introspect(&limited).await,
        Ok(Introspection::Inactive)
    );
    assert!(matches!(
        wallet.introspect(&other).await,
        Ok(Introspection::Active(_))
    ));
    assert_eq!(
        wallet.revoke_token(&BearerToken::new("garbage")).await,
        Ok(())
    );
}

/// Runs the fault rules: every failure mode of both upstreams maps to its typed error, and
/// the ports work again once the fault is gone.
pub async fn fault_contract(h: &dyn UpstreamHarness) {
    let fixture = h.catalog();
    let list = ProductQuery {
        category: None,
        limit: 5,
        offset: 0,
    };
    let device = device_request(fixture.product_price);
    let cases = [
        (Fault::ServerErrors, "5xx", UpstreamError::Unavailable),
        (
            Fault::MalformedBodies,
            "garbage",
            UpstreamError::MalformedResponse(String::new()),
        ),
        (Fault::SlowerThanTimeout, "timeout", UpstreamError::Timeout),
    ];
    for (fault, name, expected) in cases {
        let same = |result: &UpstreamError| {
            std::mem::discriminant(result) == std::mem::discriminant(&expected)
        };
        h.set_fault(Upstream::Store, fault).await;
        let store = h.store().list_products(&list).await.expect_err(name);
        assert!(same(&store), "store {name}: {store:?}");
        let session = h
            .store()
            .product(&fixture.product_id)
            .await
            .expect_err(name);
        assert!(same(&session), "store {name}: {session:?}");
        h.set_fault(Upstream::Store, Fault::None).await;

        h.set_fault(Upstream::Wallet, fault).await;
        let wallet = h
            .wallet()
            .start_device_authorization(&device)
            .await
            .expect_err(name);
        assert!(same(&wallet), "wallet {name}: {wallet:?}");
        let introspect = h
            .wallet()
            .introspect(&BearerToken::new("x"))
            .await
            .expect_err(name);
        assert!(same(&introspect), "wallet {name}: {introspect:?}");
        h.set_fault(Upstream::Wallet, Fault::None).await;
    }

    let grant = h
        .wallet()
        .start_device_authorization(&device)
        .await
        .unwrap();
    h.set_fault(Upstream::Wallet, Fault::SlowDown).await;
    assert_eq!(
        h.wallet().poll_device_token(&grant.device_code).await,
        Ok(DevicePoll::SlowDown)
    );
    h.set_fault(Upstream::Wallet, Fault::None).await;
    assert_eq!(
        h.wallet().poll_device_token(&grant.device_code).await,
        Ok(DevicePoll::Pending)
    );
    assert!(
        h.store().list_products(&list).await.is_ok(),
        "the store recovers once the fault is gone"
    );
}
