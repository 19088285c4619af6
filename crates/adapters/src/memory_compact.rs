//! The compact form in which [`crate::memory::MemoryCheckouts`] keeps a checkout.
//!
//! Embedded mode holds every open checkout in the process, so a checkout's footprint is the
//! gateway's memory: about 1.1 KiB as a boxed domain [`Checkout`] (a 504-byte struct whose
//! optional parts are mostly empty, plus one allocation per string) against about 0.35 KiB
//! here. Product ids and names are shared between the lines of all checkouts that hold the
//! same product ([`Products`]). Derived figures (line totals, subtotal, total) are not stored: the cart is rebuilt
//! with [`Cart::new`] and the whole record re-checked by [`Checkout::restore`] on every read,
//! so a read can only ever return a checkout the domain accepts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sacp_domain::checkout::{
    CheckoutRecord, CheckoutStatus, EndedStepUp, LineItem, OrderConfirmation, PaymentHold,
    StoreSessionId,
};
use sacp_domain::ids::ID_RANDOM_BYTES;
use sacp_domain::{
    Buyer, Cart, Checkout, CheckoutId, Currency, Fulfillment, Money, ProductId, Quantity,
};
use sacp_ports::RepositoryError;

use crate::memory::lock;

/// The map key of a checkout: its id's random bits (the prefix is the same for all).
pub(crate) type CompactKey = [u8; ID_RANDOM_BYTES];

/// The key under which `id` is kept.
pub(crate) fn key_of(id: &CheckoutId) -> CompactKey {
    id.to_bits()
}

/// What a line is of: the product and its name when it was added.
#[derive(Debug)]
struct LineProduct {
    product_id: ProductId,
    name: Box<str>,
}

/// The line products of all stored checkouts, each kept once.
#[derive(Debug, Default)]
pub(crate) struct Products {
    shared: Mutex<SharedProducts>,
}

#[derive(Debug, Default)]
struct SharedProducts {
    by_id: HashMap<ProductId, Arc<LineProduct>>,
    /// Size at which unused entries are dropped next (amortised: it doubles).
    sweep_at: usize,
    /// Owning organisations: few, each kept once.
    owners: std::collections::HashSet<Arc<str>>,
}

/// Entries kept before the first sweep.
const PRODUCTS_SWEPT_FROM: usize = 1024;

impl Products {
    /// The shared line product for `product_id` named `name`. A product renamed since gets a
    /// new entry; lines stored before keep the name they were added with.
    fn share(&self, product_id: &ProductId, name: &str) -> Arc<LineProduct> {
        let mut shared = lock(&self.shared);
        if let Some(product) = shared.by_id.get(product_id)
            && *product.name == *name
        {
            return product.clone();
        }
        if shared.by_id.len() >= shared.sweep_at {
            // Held only here: no stored line uses it, and none can start to without this
            // lock, so dropping it is safe.
            shared
                .by_id
                .retain(|_, product| Arc::strong_count(product) > 1);
            shared.sweep_at = (shared.by_id.len() * 2).max(PRODUCTS_SWEPT_FROM);
        }
        let product = Arc::new(LineProduct {
            product_id: product_id.clone(),
            name: name.into(),
        });
        shared.by_id.insert(product_id.clone(), product.clone());
        product
    }

    /// The shared name of the organisation `org`.
    fn owner(&self, org: &str) -> Arc<str> {
        let mut shared = lock(&self.shared);
        if let Some(owner) = shared.owners.get(org) {
            return owner.clone();
        }
        let owner: Arc<str> = Arc::from(org);
        shared.owners.insert(owner.clone());
        owner
    }

    /// How many line products are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        lock(&self.shared).by_id.len()
    }
}

/// One cart line without its derived total.
#[derive(Debug)]
struct CompactLine {
    product: Arc<LineProduct>,
    quantity: Quantity,
    unit_minor: i64,
}

/// The parts a checkout gains late in its life, kept behind one pointer because most
/// checkouts held at any time have none of them.
#[derive(Debug)]
struct Details {
    buyer: Option<Buyer>,
    fulfillment: Option<Fulfillment>,
    hold: Option<PaymentHold>,
    order: Option<OrderConfirmation>,
    payer: Option<String>,
    failure: Option<String>,
    edit_lease: Option<DateTime<Utc>>,
    step_up_lease: Option<DateTime<Utc>>,
    ended_step_up: Option<EndedStepUp>,
}

/// A checkout as stored in memory; its id is the map key.
#[derive(Debug)]
pub(crate) struct CompactCheckout {
    owner: Arc<str>,
    store_session_id: Box<str>,
    lines: Box<[CompactLine]>,
    tax_minor: i64,
    shipping_minor: Option<i64>,
    currency: Currency,
    status: CheckoutStatus,
    details: Option<Box<Details>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    version: u64,
}

impl CompactCheckout {
    /// The compact form of `checkout`, stored at `version`, its lines sharing `products`.
    pub(crate) fn of(checkout: &Checkout, version: u64, products: &Products) -> CompactCheckout {
        let record = checkout.record();
        let cart = &record.cart;
        let details = Details {
            buyer: record.buyer.clone(),
            fulfillment: record.fulfillment.clone(),
            hold: record.hold.clone(),
            order: record.order.clone(),
            payer: record.payer.clone(),
            failure: record.failure.clone(),
            edit_lease: record.edit_lease,
            step_up_lease: record.step_up_lease,
            ended_step_up: record.ended_step_up.clone(),
        };
        let has_details = details.buyer.is_some()
            || details.fulfillment.is_some()
            || details.hold.is_some()
            || details.order.is_some()
            || details.failure.is_some()
            || details.edit_lease.is_some()
            || details.step_up_lease.is_some()
            || details.ended_step_up.is_some();
        CompactCheckout {
            owner: products.owner(&record.owner),
            store_session_id: record.store_session_id.0.as_str().into(),
            lines: cart
                .lines()
                .iter()
                .map(|line| CompactLine {
                    product: products.share(&line.product_id, &line.name),
                    quantity: line.quantity,
                    unit_minor: line.unit_price.minor_units(),
                })
                .collect(),
            tax_minor: cart.tax().minor_units(),
            shipping_minor: cart.shipping().map(|s| s.minor_units()),
            // A cart has one currency: Cart::new refuses lines, tax or shipping in another.
            currency: cart.tax().currency(),
            status: record.status,
            details: has_details.then(|| Box::new(details)),
            created_at: record.created_at,
            updated_at: record.updated_at,
            expires_at: record.expires_at,
            version,
        }
    }

    /// Whether it may be retired at `cutoff` ([`sacp_domain::checkout::retirable`]).
    pub(crate) fn retirable(&self, cutoff: DateTime<Utc>) -> bool {
        sacp_domain::checkout::retirable(self.status, self.updated_at, self.expires_at, cutoff)
    }

    /// The stored version.
    pub(crate) fn version(&self) -> u64 {
        self.version
    }

    /// The store's id of the placed order, once completed.
    pub(crate) fn order_id(&self) -> Option<&str> {
        self.details
            .as_deref()
            .and_then(|d| d.order.as_ref())
            .map(|o| o.order_id.as_str())
    }

    /// The checkout kept under `key`, rebuilt and checked by the domain.
    pub(crate) fn restore(&self, key: CompactKey) -> Result<Checkout, RepositoryError> {
        let money = |minor| Money::from_minor(minor, self.currency);
        let corrupt = |why: String| RepositoryError::Corrupt(why);
        let lines = self
            .lines
            .iter()
            .map(|line| {
                let unit_price = money(line.unit_minor);
                Ok(LineItem {
                    product_id: line.product.product_id.clone(),
                    name: line.product.name.to_string(),
                    quantity: line.quantity,
                    unit_price,
                    line_total: unit_price
                        .checked_mul(u32::from(line.quantity.get()))
                        .map_err(|e| corrupt(e.to_string()))?,
                })
            })
            .collect::<Result<Vec<_>, RepositoryError>>()?;
        let cart = Cart::new(lines, money(self.tax_minor), self.shipping_minor.map(money))
            .map_err(|e| corrupt(e.to_string()))?;
        let details = self.details.as_deref();
        Checkout::restore(CheckoutRecord {
            id: CheckoutId::from_bits(key),
            owner: self.owner.to_string(),
            payer: details.and_then(|d| d.payer.clone()),
            store_session_id: StoreSessionId(self.store_session_id.to_string()),
            status: self.status,
            cart,
            buyer: details.and_then(|d| d.buyer.clone()),
            fulfillment: details.and_then(|d| d.fulfillment.clone()),
            hold: details.and_then(|d| d.hold.clone()),
            order: details.and_then(|d| d.order.clone()),
            failure: details.and_then(|d| d.failure.clone()),
            edit_lease: details.and_then(|d| d.edit_lease),
            step_up_lease: details.and_then(|d| d.step_up_lease),
            ended_step_up: details.and_then(|d| d.ended_step_up.clone()),
            created_at: self.created_at,
            updated_at: self.updated_at,
            expires_at: self.expires_at,
            version: self.version,
        })
        .map_err(|e| corrupt(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use sacp_domain::ids::RandomSource;

    use super::*;

    struct Fixed;
    impl RandomSource for Fixed {
        fn fill_bytes(&self, dest: &mut [u8]) {
            dest.fill(0x2a);
        }
    }

    fn cad(minor: i64) -> Money {
        Money::from_minor(minor, Currency::CAD)
    }

    fn line(product: &str, quantity: u8, unit: i64) -> LineItem {
        let quantity = Quantity::parse(i64::from(quantity)).unwrap();
        LineItem {
            product_id: ProductId::parse(product).unwrap(),
            name: format!("Product {product}"),
            quantity,
            unit_price: cad(unit),
            line_total: cad(unit * i64::from(quantity.get())),
        }
    }

    fn open(buyer: Option<Buyer>, shipping: Option<Money>) -> Checkout {
        let now = DateTime::from_timestamp(1_790_000_000, 123_456_789).unwrap();
        let cart = Cart::new(
            vec![line("prod-1", 2, 1999), line("prod-2", 1, 450)],
            cad(577),
            shipping,
        )
        .unwrap();
        Checkout::open(
            "acme",
            CheckoutId::generate(&Fixed),
            StoreSessionId("sess_42".into()),
            cart,
            buyer,
            None,
            now,
            now + chrono::Duration::minutes(30),
        )
    }

    fn round_trip(checkout: &Checkout) -> Checkout {
        let key = key_of(checkout.id());
        CompactCheckout::of(checkout, checkout.version(), &Products::default())
            .restore(key)
            .unwrap()
    }

    #[test]
    fn a_fresh_checkout_comes_back_equal_without_details() {
        let checkout = open(None, None);
        assert!(
            CompactCheckout::of(&checkout, 0, &Products::default())
                .details
                .is_none(),
            "an open cart needs no details box"
        );
        assert_eq!(round_trip(&checkout), checkout);
    }

    #[test]
    fn buyer_shipping_and_version_come_back_equal() {
        let buyer = Buyer {
            name: "Ada Lovelace".into(),
            email: sacp_domain::validation::Email::parse("ada@example.com").unwrap(),
            phone: None,
        };
        let mut checkout = open(Some(buyer), Some(cad(1500)));
        checkout.set_version(7);
        let back = round_trip(&checkout);
        assert_eq!(back, checkout);
        assert_eq!(back.record().cart.total(), checkout.record().cart.total());
    }

    #[test]
    fn lines_of_the_same_product_share_it_and_a_rename_keeps_old_lines() {
        let products = Products::default();
        let checkout = open(None, None);
        let first = CompactCheckout::of(&checkout, 1, &products);
        let second = CompactCheckout::of(&checkout, 1, &products);
        assert!(Arc::ptr_eq(
            &first.lines[0].product,
            &second.lines[0].product
        ));
        assert_eq!(products.len(), 2);

        let renamed = products.share(&ProductId::parse("prod-1").unwrap(), "New name");
        assert_eq!(&*renamed.name, "New name");
        let back = first.restore(key_of(checkout.id())).unwrap();
        assert_eq!(back.record().cart.lines()[0].name, "Product prod-1");
    }

    #[test]
    fn products_no_stored_line_uses_are_dropped() {
        let products = Products::default();
        for n in 0..3 * PRODUCTS_SWEPT_FROM {
            drop(products.share(&ProductId::parse(&format!("p{n}")).unwrap(), "name"));
        }
        let kept = products.share(&ProductId::parse("kept").unwrap(), "name");
        for n in 0..3 * PRODUCTS_SWEPT_FROM {
            drop(products.share(&ProductId::parse(&format!("q{n}")).unwrap(), "name"));
        }
        assert!(
            products.len() <= 2 * PRODUCTS_SWEPT_FROM,
            "{}",
            products.len()
        );
        let again = products.share(&ProductId::parse("kept").unwrap(), "name");
        assert!(
            Arc::ptr_eq(&kept, &again),
            "a product in use is never dropped"
        );
    }

    #[test]
    fn the_compact_form_is_far_smaller_than_the_domain_struct() {
        // The reason this module exists: the inline part must stay a fraction of Checkout.
        assert!(std::mem::size_of::<CompactCheckout>() * 3 < std::mem::size_of::<Checkout>());
    }
}
