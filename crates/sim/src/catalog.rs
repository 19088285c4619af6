//! The sandbox store's seeded catalog.
//!
//! It reproduces the seed conversation: a search for "coffee" finds exactly the three coffees,
//! and one Ethiopian Yirgacheffe (18.99 CAD) plus 13% tax totals 21.46 CAD.

/// A product as the simulated store keeps it (prices in cents).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimProduct {
    /// Product id (a UUID, as the real store uses).
    pub id: &'static str,
    /// Name.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// Unit price in cents.
    pub price_cents: i64,
    /// Whether it can be bought.
    pub available: bool,
    /// Units in stock; `None` when not tracked.
    pub quantity: Option<u32>,
    /// Category slugs.
    pub categories: &'static [&'static str],
}

/// Currency of every sandbox price.
pub const CURRENCY: &str = "CAD";

/// Id of the Ethiopian Yirgacheffe of the seed conversation.
pub const ETHIOPIAN_YIRGACHEFFE: &str = "7f3c9a52-1d8e-4b6a-9c2f-0e5d8b1a4c71";
/// Id of a product that exists but cannot be bought.
pub const SOLD_OUT_GRINDER: &str = "c2b8e6f4-7a1d-4e3b-8f9c-5d2a6b0e1f83";

/// The seeded catalog, in listing order.
pub fn seed() -> Vec<SimProduct> {
    vec![
        SimProduct {
            id: ETHIOPIAN_YIRGACHEFFE,
            name: "Ethiopian Yirgacheffe",
            description: "Single-origin light roast coffee with floral and citrus notes. Whole bean, 340 g.",
            price_cents: 1899,
            available: true,
            quantity: Some(120),
            categories: &["coffee", "whole-bean", "single-origin"],
        },
        SimProduct {
            id: "3a6d2f1e-8b4c-4d7a-a5e9-1c0b7f2d6e48",
            name: "Colombian Medium Roast",
            description: "Balanced medium roast coffee with caramel sweetness. Whole bean, 340 g.",
            price_cents: 1499,
            available: true,
            quantity: Some(200),
            categories: &["coffee", "whole-bean"],
        },
        SimProduct {
            id: "b5e1c7d9-2f4a-4c8e-9b3d-6a0f8e2c1d57",
            name: "Espresso Blend",
            description: "Dark roast coffee blend for espresso, notes of cocoa. Whole bean, 340 g.",
            price_cents: 1699,
            available: true,
            quantity: Some(150),
            categories: &["coffee", "whole-bean", "espresso"],
        },
        SimProduct {
            id: "e8f2a4c6-9d1b-4f3e-8a7c-2b5d0e9f1a36",
            name: "Earl Grey Tea",
            description: "Black tea scented with bergamot. Loose leaf, 100 g.",
            price_cents: 1249,
            available: true,
            quantity: Some(80),
            categories: &["tea", "loose-leaf"],
        },
        SimProduct {
            id: "4d9b1e7a-6c3f-4a2d-b8e5-7f1c0a3d9e62",
            name: "Ceremonial Matcha",
            description: "Stone-ground green tea powder from Uji. Tin, 30 g.",
            price_cents: 2100,
            available: true,
            quantity: None,
            categories: &["tea", "matcha"],
        },
        SimProduct {
            id: "9a1f5c3e-4b7d-4e8a-a2c6-8d0e3f5b7c19",
            name: "French Press",
            description: "Borosilicate glass brewer with stainless steel plunger, 1 litre.",
            price_cents: 3999,
            available: true,
            quantity: Some(25),
            categories: &["equipment", "brewers"],
        },
        SimProduct {
            id: "f6c3a8e1-5d2b-4b9f-8e4a-3c7d1b0a2e95",
            name: "Ceramic Pour-Over Dripper",
            description: "Cone dripper for paper filters, glazed ceramic.",
            price_cents: 2450,
            available: true,
            quantity: Some(40),
            categories: &["equipment", "brewers"],
        },
        SimProduct {
            id: SOLD_OUT_GRINDER,
            name: "Conical Burr Grinder",
            description: "Forty grind settings from espresso to French press. Currently sold out.",
            price_cents: 8900,
            available: false,
            quantity: Some(0),
            categories: &["equipment", "grinders"],
        },
    ]
}
