//! Validation of what agents send: items, buyer, fulfillment.
//!
//! Each rule lives in the constructor of a type (`Quantity`, `Email`, `Address`...), so a
//! value of the type is valid by construction. Errors are collected per field with a message
//! an AI agent can act on directly ("items[1].quantity must be between 1 and 99").

use std::collections::HashSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use validator::ValidateEmail;

/// One problem with one field of the input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field, e.g. `items[1].quantity` or `fulfillment.address.postal_code`.
    pub field: String,
    /// Stable machine-readable code: `required`, `out_of_range`, `invalid_format`,
    /// `duplicate`, `too_long`, `too_many`, `too_few`.
    pub code: &'static str,
    /// What is wrong and what would be accepted, for a person or an AI agent.
    pub message: String,
}

/// Most problems reported for one input: the rest are only counted, so that no input can
/// make an answer (or a stored idempotent answer) grow with its own size.
pub const MAX_REPORTED_ERRORS: usize = 25;

/// Every problem found in one input (the first [`MAX_REPORTED_ERRORS`] of them, and how many
/// more); never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, Default, thiserror::Error)]
pub struct ValidationErrors {
    errors: Vec<FieldError>,
    omitted: usize,
}

impl ValidationErrors {
    /// Records a problem with `field`.
    pub fn push(
        &mut self,
        field: impl Into<String>,
        code: &'static str,
        message: impl Into<String>,
    ) {
        self.push_error(FieldError {
            field: field.into(),
            code,
            message: message.into(),
        });
    }

    fn push_error(&mut self, error: FieldError) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(error);
        } else {
            self.omitted += 1;
        }
    }

    /// The problems reported, in input order.
    pub fn errors(&self) -> &[FieldError] {
        &self.errors
    }

    /// How many more problems were found than are reported.
    pub fn omitted(&self) -> usize {
        self.omitted
    }

    /// Whether nothing was found.
    pub fn is_empty(&self) -> bool {
        self.errors.is_empty() && self.omitted == 0
    }

    /// Adds every problem of `other` as it is.
    pub fn append(&mut self, other: ValidationErrors) {
        for error in other.errors {
            self.push_error(error);
        }
        self.omitted += other.omitted;
    }

    /// Adds every problem of `other`, with its field paths prefixed by `prefix`.
    pub fn merge_under(&mut self, prefix: &str, other: ValidationErrors) {
        for mut error in other.errors {
            error.field = format!("{prefix}.{}", error.field);
            self.push_error(error);
        }
        self.omitted += other.omitted;
    }

    /// `Ok(value)` when nothing was found, else `Err(self)`.
    pub fn into_result<T>(self, value: T) -> Result<T, ValidationErrors> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        f.write_str(&parts.join("; "))?;
        if self.omitted > 0 {
            write!(f, "; and {} more", self.omitted)?;
        }
        Ok(())
    }
}

/// Largest number of distinct product lines in one checkout.
pub const MAX_LINES: usize = 50;
/// Largest quantity of one product line.
pub const MAX_QUANTITY: u8 = 99;

/// A store product id: opaque text from the store (UUIDs in practice), 1–128 characters
/// from `A-Z a-z 0-9 . _ : -`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductId(String);

impl ProductId {
    /// Parses a product id, refusing characters that have no place in an id.
    pub fn parse(text: &str) -> Result<ProductId, String> {
        // Dots alone (`.`, `..`) would be path segments naming another resource upstream.
        let ok = !text.is_empty()
            && text.len() <= 128
            && !text.bytes().all(|b| b == b'.')
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if ok {
            Ok(ProductId(text.to_owned()))
        } else {
            Err("must be a product id from GET /products (letters, digits, '-', '_', '.', ':'; at most 128)".to_owned())
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ProductId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        ProductId::parse(&value)
    }
}

impl From<ProductId> for String {
    fn from(value: ProductId) -> Self {
        value.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProductId({})", self.0)
    }
}

/// A line quantity, 1 to [`MAX_QUANTITY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "u8", try_from = "i64")]
pub struct Quantity(u8);

impl Quantity {
    /// Parses a quantity sent by a client (any integer, so that out-of-range values get a
    /// clear message rather than a type error).
    pub fn parse(value: i64) -> Result<Quantity, String> {
        match u8::try_from(value) {
            Ok(q) if (1..=MAX_QUANTITY).contains(&q) => Ok(Quantity(q)),
            _ => Err(format!("must be between 1 and {MAX_QUANTITY}, got {value}")),
        }
    }

    /// The quantity as a number.
    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<i64> for Quantity {
    type Error = String;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Quantity::parse(value)
    }
}

impl From<Quantity> for u8 {
    fn from(value: Quantity) -> Self {
        value.0
    }
}

/// A client's request for one product line, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ItemInput {
    /// The product id, if given.
    pub product_id: Option<String>,
    /// The quantity, if given.
    pub quantity: Option<i64>,
}

/// A validated product line request.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ItemRequest {
    /// The product.
    pub product_id: ProductId,
    /// How many.
    pub quantity: Quantity,
}

/// A validated list of product lines: 1 to [`MAX_LINES`], each product at most once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Items(Vec<ItemRequest>);

impl Items {
    /// Validates `items`, reporting every problem with its index.
    pub fn parse(items: &[ItemInput]) -> Result<Items, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if items.is_empty() {
            errors.push(
                "items",
                "too_few",
                "add at least one item: [{\"product_id\": \"...\", \"quantity\": 1}]",
            );
        }
        if items.len() > MAX_LINES {
            // Said once: the lines of an over-long list are not examined one by one.
            errors.push(
                "items",
                "too_many",
                format!(
                    "at most {MAX_LINES} product lines per checkout, got {}",
                    items.len()
                ),
            );
            return Err(errors);
        }
        let mut seen = HashSet::new();
        let mut parsed = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let product_id = match item.product_id.as_deref() {
                None => {
                    errors.push(
                        format!("items[{index}].product_id"),
                        "required",
                        "is required",
                    );
                    None
                }
                Some(text) => match ProductId::parse(text) {
                    Ok(id) => {
                        if !seen.insert(id.clone()) {
                            errors.push(
                                format!("items[{index}].product_id"),
                                "duplicate",
                                format!("product {id} is listed twice: use one line with the total quantity"),
                            );
                        }
                        Some(id)
                    }
                    Err(message) => {
                        errors.push(
                            format!("items[{index}].product_id"),
                            "invalid_format",
                            message,
                        );
                        None
                    }
                },
            };
            let quantity = match item.quantity {
                None => {
                    errors.push(
                        format!("items[{index}].quantity"),
                        "required",
                        "is required",
                    );
                    None
                }
                Some(value) => match Quantity::parse(value) {
                    Ok(q) => Some(q),
                    Err(message) => {
                        errors.push(format!("items[{index}].quantity"), "out_of_range", message);
                        None
                    }
                },
            };
            if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
                parsed.push(ItemRequest {
                    product_id,
                    quantity,
                });
            }
        }
        errors.into_result(Items(parsed))
    }

    /// The lines, in the order given.
    pub fn lines(&self) -> &[ItemRequest] {
        &self.0
    }
}

/// The officially assigned ISO 3166-1 alpha-2 country codes (249; from the ISO 3166
/// maintenance agency's list as packaged by pycountry 26.2.16), sorted for binary search.
/// User-assigned codes (`XX`, `ZZ`, `XK`…) are not countries a store ships to.
const ISO_3166_ALPHA2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

/// Whether `code` (uppercase) is an assigned ISO 3166-1 alpha-2 code.
fn is_country_code(code: &str) -> bool {
    ISO_3166_ALPHA2.binary_search(&code).is_ok()
}

/// Characters that change how text is shown without being seen: bidirectional overrides,
/// embeddings and isolates (which can make an address or a name read differently from what
/// is stored), zero-width spaces and joiners, word joiners, invisible operators, line and
/// paragraph separators, the BOM, tags. Shown to a person in a wallet or on a parcel, they
/// only ever mislead.
fn is_invisible_format(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Whether `c` is a combining mark of the common blocks (accents stacked on a letter).
fn is_combining_mark(c: char) -> bool {
    matches!(
        c,
        '\u{0300}'..='\u{036F}'
            | '\u{1AB0}'..='\u{1AFF}'
            | '\u{1DC0}'..='\u{1DFF}'
            | '\u{20D0}'..='\u{20FF}'
            | '\u{FE20}'..='\u{FE2F}'
    )
}

/// Most combining marks one letter carries in real writing (Vietnamese stacks two).
const MAX_COMBINING_RUN: usize = 4;

/// Whether a zero-width (non-)joiner at `index` sits between two letters of a script that
/// writes with it (Arabic, Persian, the Indic scripts…): beside Latin letters it only hides.
fn is_script_joiner(chars: &[char], index: usize) -> bool {
    let writes_with_joiners = |c: &char| c.is_alphabetic() && *c > '\u{024F}';
    index > 0
        && matches!(chars[index], '\u{200C}' | '\u{200D}')
        && writes_with_joiners(&chars[index - 1])
        && chars.get(index + 1).is_some_and(writes_with_joiners)
}

/// Whether `text` holds an invisible formatting character where none belongs (the zero-width
/// (non-)joiner is accepted between two letters of a script that writes with it), or a letter
/// buried under more than [`MAX_COMBINING_RUN`] combining marks.
pub(crate) fn has_hidden_characters(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    let hidden = chars
        .iter()
        .enumerate()
        .any(|(index, c)| is_invisible_format(*c) && !is_script_joiner(&chars, index));
    let mut run = 0;
    let stacked = chars.iter().any(|c| {
        run = if is_combining_mark(*c) { run + 1 } else { 0 };
        run > MAX_COMBINING_RUN
    });
    hidden || stacked
}

/// Checks a required free-text field: present, non-blank, at most `max` characters, no
/// control characters and no invisible formatting characters. Returns the trimmed text.
fn required_text(
    errors: &mut ValidationErrors,
    field: &str,
    value: Option<&str>,
    max: usize,
    hint: &str,
) -> Option<String> {
    let Some(value) = value.map(str::trim).filter(|v| !v.is_empty()) else {
        errors.push(field, "required", format!("is required ({hint})"));
        return None;
    };
    if value.chars().count() > max {
        errors.push(
            field,
            "too_long",
            format!("must be at most {max} characters"),
        );
        return None;
    }
    if value.chars().any(char::is_control) {
        errors.push(
            field,
            "invalid_format",
            "must not contain control characters",
        );
        return None;
    }
    if has_hidden_characters(value) {
        errors.push(
            field,
            "invalid_format",
            "must not contain invisible formatting characters (bidirectional overrides, zero-width spaces)",
        );
        return None;
    }
    Some(value.to_owned())
}

/// A buyer's email address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    /// Parses an email address (syntax of the HTML specification, at most 254 characters).
    pub fn parse(text: &str) -> Result<Email, String> {
        let text = text.trim();
        if text.len() <= 254 && !has_hidden_characters(text) && text.validate_email() {
            Ok(Email(text.to_owned()))
        } else {
            Err("must be an email address such as john@example.com".to_owned())
        }
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A buyer's phone number: 7 to 15 digits, optionally with `+`, spaces, dots, dashes and
/// parentheses as a person would type it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Phone(String);

impl Phone {
    /// Parses a phone number.
    pub fn parse(text: &str) -> Result<Phone, String> {
        let text = text.trim();
        let digits = text.bytes().filter(u8::is_ascii_digit).count();
        let allowed = text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b' ' | b'-' | b'.' | b'(' | b')'));
        if allowed && (7..=15).contains(&digits) {
            Ok(Phone(text.to_owned()))
        } else {
            Err("must be a phone number of 7 to 15 digits, such as +1 416 555 0100".to_owned())
        }
    }

    /// The number as typed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A buyer's details before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BuyerInput {
    /// Full name.
    pub name: Option<String>,
    /// Email address.
    pub email: Option<String>,
    /// Optional phone number.
    pub phone: Option<String>,
}

/// The person buying: name and email are required, phone is optional.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Buyer {
    /// Full name, trimmed.
    pub name: String,
    /// Email address.
    pub email: Email,
    /// Phone number, if given.
    pub phone: Option<Phone>,
}

impl Buyer {
    /// Validates a buyer, reporting field paths relative to the buyer (`name`, `email`).
    pub fn parse(input: &BuyerInput) -> Result<Buyer, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let name = required_text(
            &mut errors,
            "name",
            input.name.as_deref(),
            200,
            "the buyer's full name",
        );
        let email = match input
            .email
            .as_deref()
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            None => {
                errors.push(
                    "email",
                    "required",
                    "is required (the buyer's email address)",
                );
                None
            }
            Some(text) => Email::parse(text)
                .map_err(|message| errors.push("email", "invalid_format", message))
                .ok(),
        };
        let phone = match input
            .phone
            .as_deref()
            .map(str::trim)
            .filter(|p| !p.is_empty())
        {
            None => None,
            Some(text) => match Phone::parse(text) {
                Ok(phone) => Some(phone),
                Err(message) => {
                    errors.push("phone", "invalid_format", message);
                    None
                }
            },
        };
        match (name, email) {
            (Some(name), Some(email)) if errors.is_empty() => Ok(Buyer { name, email, phone }),
            _ => Err(errors),
        }
    }
}

/// A postal address before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AddressInput {
    /// Street line.
    pub street: Option<String>,
    /// City.
    pub city: Option<String>,
    /// State or province.
    pub state: Option<String>,
    /// Postal or ZIP code.
    pub postal_code: Option<String>,
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
}

/// A complete shipping address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    /// Street line.
    pub street: String,
    /// City.
    pub city: String,
    /// State or province (e.g. `ON`).
    pub state: String,
    /// Postal or ZIP code.
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 country code, uppercase (e.g. `CA`).
    pub country: String,
}

impl Address {
    /// Validates an address; every field is required.
    pub fn parse(input: &AddressInput) -> Result<Address, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        let street = required_text(
            &mut errors,
            "street",
            input.street.as_deref(),
            200,
            "e.g. 123 Main St",
        );
        let city = required_text(
            &mut errors,
            "city",
            input.city.as_deref(),
            100,
            "e.g. Toronto",
        );
        let state = required_text(
            &mut errors,
            "state",
            input.state.as_deref(),
            100,
            "state or province, e.g. ON",
        );
        let postal_code = required_text(
            &mut errors,
            "postal_code",
            input.postal_code.as_deref(),
            20,
            "e.g. M5V 1A1",
        );
        let country = match input
            .country
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
        {
            None => {
                errors.push(
                    "country",
                    "required",
                    "is required (two-letter country code, e.g. CA)",
                );
                None
            }
            Some(code) if is_country_code(&code.to_ascii_uppercase()) => {
                Some(code.to_ascii_uppercase())
            }
            Some(_) => {
                errors.push(
                    "country",
                    "invalid_format",
                    "must be an assigned two-letter ISO 3166-1 country code such as CA or US",
                );
                None
            }
        };
        match (street, city, state, postal_code, country) {
            (Some(street), Some(city), Some(state), Some(postal_code), Some(country)) => {
                Ok(Address {
                    street,
                    city,
                    state,
                    postal_code,
                    country,
                })
            }
            _ => Err(errors),
        }
    }
}

/// How the order reaches the buyer, before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FulfillmentInput {
    /// `shipping` or `pickup`.
    pub kind: Option<String>,
    /// The address, required for shipping.
    pub address: Option<AddressInput>,
}

/// How the order reaches the buyer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fulfillment {
    /// Shipped to a full address.
    Shipping {
        /// Where to ship.
        address: Address,
    },
    /// Collected at the store; no address needed.
    Pickup,
}

impl Fulfillment {
    /// Validates fulfillment: shipping needs a full address, pickup needs none (an address
    /// sent with pickup is ignored).
    pub fn parse(input: &FulfillmentInput) -> Result<Fulfillment, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        match input.kind.as_deref().map(str::trim) {
            Some("shipping") => match &input.address {
                None => {
                    errors.push(
                        "address",
                        "required",
                        "shipping needs an address {street, city, state, postal_code, country}",
                    );
                    Err(errors)
                }
                Some(address) => match Address::parse(address) {
                    Ok(address) => Ok(Fulfillment::Shipping { address }),
                    Err(inner) => {
                        errors.merge_under("address", inner);
                        Err(errors)
                    }
                },
            },
            Some("pickup") => Ok(Fulfillment::Pickup),
            None | Some("") => {
                errors.push(
                    "type",
                    "required",
                    "is required: \"shipping\" or \"pickup\"",
                );
                Err(errors)
            }
            Some(_) => {
                errors.push(
                    "type",
                    "invalid_format",
                    "must be \"shipping\" or \"pickup\"",
                );
                Err(errors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(product_id: &str, quantity: i64) -> ItemInput {
        ItemInput {
            product_id: Some(product_id.to_owned()),
            quantity: Some(quantity),
        }
    }

    fn fields(errors: &ValidationErrors) -> Vec<(&str, &str)> {
        errors
            .errors()
            .iter()
            .map(|e| (e.field.as_str(), e.code))
            .collect()
    }

    #[test]
    fn valid_items_parse_in_order() {
        let items = Items::parse(&[item("eth-yirga", 1), item("colombian", 99)]).unwrap();
        assert_eq!(items.lines().len(), 2);
        assert_eq!(items.lines()[1].quantity.get(), 99);
    }

    #[test]
    fn every_item_problem_is_reported_with_its_index() {
        let errors = Items::parse(&[
            item("a", 0),
            item("b", 100),
            item("a", 1),
            ItemInput::default(),
            item("bad id!", 1),
        ])
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                ("items[0].quantity", "out_of_range"),
                ("items[1].quantity", "out_of_range"),
                ("items[2].product_id", "duplicate"),
                ("items[3].product_id", "required"),
                ("items[3].quantity", "required"),
                ("items[4].product_id", "invalid_format"),
            ]
        );
        assert!(errors.errors()[0].message.contains("between 1 and 99"));
    }

    #[test]
    fn line_count_is_bounded() {
        assert_eq!(
            fields(&Items::parse(&[]).unwrap_err()),
            vec![("items", "too_few")]
        );
        let many: Vec<_> = (0..51).map(|i| item(&format!("p{i}"), 1)).collect();
        assert_eq!(
            fields(&Items::parse(&many).unwrap_err()),
            vec![("items", "too_many")]
        );
        assert!(Items::parse(&many[..50]).is_ok());
    }

    #[test]
    fn buyer_needs_name_and_email_phone_optional() {
        let ok = Buyer::parse(&BuyerInput {
            name: Some(" John Doe ".into()),
            email: Some("john@example.com".into()),
            phone: None,
        })
        .unwrap();
        assert_eq!(ok.name, "John Doe");
        let errors = Buyer::parse(&BuyerInput {
            name: Some("   ".into()),
            email: Some("not-an-email".into()),
            phone: Some("12".into()),
        })
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                ("name", "required"),
                ("email", "invalid_format"),
                ("phone", "invalid_format")
            ]
        );
    }

    #[test]
    fn shipping_needs_a_full_address_pickup_needs_none() {
        let errors = Fulfillment::parse(&FulfillmentInput {
            kind: Some("shipping".into()),
            address: Some(AddressInput {
                street: Some("123 Main St".into()),
                city: Some("Toronto".into()),
                state: None,
                postal_code: Some("M5V 1A1".into()),
                country: Some("Canada".into()),
            }),
        })
        .unwrap_err();
        assert_eq!(
            fields(&errors),
            vec![
                ("address.state", "required"),
                ("address.country", "invalid_format")
            ]
        );
        assert_eq!(
            Fulfillment::parse(&FulfillmentInput {
                kind: Some("pickup".into()),
                address: None
            }),
            Ok(Fulfillment::Pickup)
        );
        assert_eq!(
            fields(&Fulfillment::parse(&FulfillmentInput::default()).unwrap_err()),
            vec![("type", "required")]
        );
        assert_eq!(
            fields(
                &Fulfillment::parse(&FulfillmentInput {
                    kind: Some("shipping".into()),
                    address: None
                })
                .unwrap_err()
            ),
            vec![("address", "required")]
        );
    }

    fn address(street: &str, country: &str) -> AddressInput {
        AddressInput {
            street: Some(street.into()),
            city: Some("Toronto".into()),
            state: Some("ON".into()),
            postal_code: Some("M5V 1A1".into()),
            country: Some(country.into()),
        }
    }

    #[test]
    fn text_that_would_show_differently_than_stored_is_refused() {
        for hidden in [
            "John\u{202E}eoD",
            "John\u{2066}Doe\u{2069}",
            "Jo\u{200B}hn",
            "\u{FEFF}John",
            "John\u{00AD}Doe",
            "Jo\u{200D}",
            "Jo\u{200D}hn",
            "John\u{2028}Doe",
            "Zalgo\u{0301}\u{0302}\u{0303}\u{0304}\u{0305}",
        ] {
            let errors = Buyer::parse(&BuyerInput {
                name: Some(hidden.into()),
                email: Some("john@example.com".into()),
                phone: None,
            })
            .unwrap_err();
            assert_eq!(
                fields(&errors),
                vec![("name", "invalid_format")],
                "{hidden:?}"
            );
        }
        let errors = Address::parse(&address("123 Main\u{202D} St", "CA")).unwrap_err();
        assert_eq!(fields(&errors), vec![("street", "invalid_format")]);
        // A zero-width non-joiner between letters is how Persian writes some names.
        let persian = Buyer::parse(&BuyerInput {
            name: Some("\u{0645}\u{06CC}\u{200C}\u{0631}\u{0648}\u{062F}".into()),
            email: Some("m@example.com".into()),
            phone: None,
        });
        assert!(persian.is_ok(), "{persian:?}");
        let vietnamese = Buyer::parse(&BuyerInput {
            name: Some("Nguye\u{0302}\u{0303}n".into()),
            email: Some("n@example.com".into()),
            phone: None,
        });
        assert!(
            vietnamese.is_ok(),
            "two stacked accents are writing: {vietnamese:?}"
        );
        assert!(Email::parse("john\u{200B}@example.com").is_err());
    }

    #[test]
    fn only_assigned_country_codes_are_countries() {
        assert_eq!(
            Address::parse(&address("1 Main St", "ca")).unwrap().country,
            "CA"
        );
        assert!(Address::parse(&address("1 Main St", "US")).is_ok());
        for bad in ["XX", "ZZ", "QQ", "AA", "C1", "CAN", "ÇA"] {
            let errors = Address::parse(&address("1 Main St", bad)).unwrap_err();
            assert_eq!(
                fields(&errors),
                vec![("country", "invalid_format")],
                "{bad}"
            );
        }
        assert!(
            ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]),
            "sorted, once each"
        );
    }

    #[test]
    fn answers_stay_small_whatever_the_input() {
        let errors = Items::parse(&vec![ItemInput::default(); 9_000]).unwrap_err();
        assert_eq!(fields(&errors), vec![("items", "too_many")]);
        let many: Vec<ItemInput> = (0..MAX_LINES).map(|_| ItemInput::default()).collect();
        let errors = Items::parse(&many).unwrap_err();
        assert_eq!(errors.errors().len(), MAX_REPORTED_ERRORS);
        assert_eq!(errors.omitted(), 2 * MAX_LINES - MAX_REPORTED_ERRORS);
        assert!(
            errors
                .to_string()
                .ends_with(&format!("and {} more", errors.omitted()))
        );
    }

    #[test]
    fn dots_alone_are_not_product_ids() {
        for bad in [".", "..", "..."] {
            assert!(ProductId::parse(bad).is_err(), "{bad}");
        }
        assert!(ProductId::parse("v1.2").is_ok());
    }
}
