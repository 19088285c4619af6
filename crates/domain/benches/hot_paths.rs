//! Microbenchmarks of the domain's hot paths: the rate-limit decision every keyed request
//! makes, the checkout state machine's transitions, and money parsing at the store boundary.
//! Run with `cargo bench -p sacp-domain` (scripts/bench does, and puts the results in its
//! table).

use std::hint::black_box;

use chrono::{DateTime, TimeZone, Utc};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sacp_domain::checkout::{OrderConfirmation, PaymentHold, StoreSessionId};
use sacp_domain::ratelimit::{CounterAt, Decision, Limit, Moment, Policy, Usage};
use sacp_domain::validation::{Address, Email};
use sacp_domain::{
    Buyer, Cart, Checkout, CheckoutId, Currency, Fulfillment, LineItem, Money,
    PaymentAuthorizationId, ProductId, Quantity, RandomSource,
};

struct Fixed(u8);

impl RandomSource for Fixed {
    fn fill_bytes(&self, dest: &mut [u8]) {
        dest.fill(self.0);
    }
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + seconds, 0)
        .single()
        .unwrap_or_default()
}

/// The limits of a keyed read: the key's minute and day, and its organisation's minute.
fn read_limits() -> Vec<Limit> {
    vec![
        Limit::new(Policy::per_minute("key-minute", 600), "key:key_abc"),
        Limit::new(Policy::per_day("key-day", 100_000), "key:key_abc"),
        Limit::new(Policy::per_minute("org-minute", 6_000), "org:acme"),
    ]
}

/// What the admission middleware computes per request once the counters answered: the
/// windows, each limit's usage, the verdict and the `RateLimit` header (the
/// `RateLimit-Policy` one is made once per key), all in place.
fn rate_limit_decision(c: &mut Criterion) {
    let limits = read_limits();
    let now = at(42);
    c.bench_function("ratelimit/decide_and_headers", |b| {
        b.iter(|| {
            let moment = Moment::of(black_box(now));
            let mut counters = [CounterAt::default(); 3];
            for (slot, limit) in counters.iter_mut().zip(&limits) {
                *slot = limit.counter_at(moment);
            }
            let decision: Decision = limits
                .iter()
                .zip(&counters)
                .zip(black_box([17_u64, 1_234, 90]))
                .map(|((limit, counter), count)| {
                    Usage::at(*limit.policy(), count, counter.window_end, moment)
                })
                .collect();
            let mut header = [0u8; 256];
            let written = decision.write_limit_header(&mut header);
            black_box((counters, decision.allowed(), written, header))
        })
    });
}

fn cad(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CAD)
}

fn open_checkout() -> Option<(Checkout, Buyer, Fulfillment)> {
    let unit = cad(1899);
    let cart = Cart::new(
        vec![LineItem {
            product_id: ProductId::parse("eth-yirga").ok()?,
            name: "Ethiopian Yirgacheffe".into(),
            quantity: Quantity::parse(1).ok()?,
            unit_price: unit,
            line_total: unit,
        }],
        cad(247),
        None,
    )
    .ok()?;
    let checkout = Checkout::open(
        "acme",
        CheckoutId::generate(&Fixed(1)),
        StoreSessionId("sess_1".into()),
        cart,
        None,
        None,
        at(0),
        at(1800),
    );
    let buyer = Buyer {
        name: "John Doe".into(),
        email: Email::parse("john@example.com").ok()?,
        phone: None,
    };
    let shipping = Fulfillment::Shipping {
        address: Address {
            street: "123 Main St".into(),
            city: "Toronto".into(),
            state: "ON".into(),
            postal_code: "M5V 1A1".into(),
            country: "CA".into(),
        },
    };
    Some((checkout, buyer, shipping))
}

/// One guest checkout's life in the state machine: edit to `ready_for_payment`, start the
/// authorization (`authorizing`), complete (`completed`).
fn state_transitions(c: &mut Criterion) {
    let Some((checkout, buyer, shipping)) = open_checkout() else {
        panic!("the benchmark's checkout is valid");
    };
    let hold = PaymentHold::Device {
        authorization_id: PaymentAuthorizationId::generate(&Fixed(2)),
        amount: cad(2146),
    };
    let order = OrderConfirmation {
        order_id: "ord_1".into(),
        transaction_id: "txn_1".into(),
    };
    c.bench_function("checkout/edit_authorize_complete", |b| {
        b.iter_batched(
            || checkout.clone(),
            |mut checkout| {
                let cart = checkout.cart().clone();
                let edited =
                    checkout.edit(cart, Some(buyer.clone()), Some(shipping.clone()), at(10));
                let authorizing = checkout.begin_authorization(hold.clone(), at(20));
                let completed = checkout.complete_authorized(&hold, order.clone(), at(30));
                black_box((edited, authorizing, completed, checkout))
            },
            BatchSize::SmallInput,
        )
    });
}

/// Decimal amounts as the store sends them, to exact minor units.
fn money_parsing(c: &mut Criterion) {
    c.bench_function("money/parse_decimal", |b| {
        b.iter(|| Money::parse_decimal(black_box("1234.56"), Currency::CAD))
    });
    c.bench_function("money/to_decimal_string", |b| {
        let amount = cad(123_456);
        b.iter(|| black_box(amount).to_decimal_string())
    });
}

criterion_group!(
    hot_paths,
    rate_limit_decision,
    state_transitions,
    money_parsing
);
criterion_main!(hot_paths);
