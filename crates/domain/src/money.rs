//! Money as integer minor units of an ISO 4217 currency.
//!
//! Upstream services speak decimal dollars (`18.99`, `"25"`, `59.970`). They are converted
//! here, exactly: a value that does not fit the currency's minor unit (`18.999` CAD) or an
//! `i64` is refused rather than rounded. No binary floating point is involved anywhere.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a currency code or an amount was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The text is not an ISO 4217 alphabetic code of a currency with minor units.
    #[error("unknown currency code {0:?}: use an ISO 4217 code such as CAD or USD")]
    UnknownCurrency(String),
    /// The text is not a decimal number.
    #[error("not a decimal amount: {0:?}")]
    NotADecimal(String),
    /// The number has more decimal places than the currency's minor unit allows.
    #[error("{amount} has more decimal places than {currency} allows ({exponent})")]
    TooPrecise {
        /// The offending text.
        amount: String,
        /// The currency it was read in.
        currency: Currency,
        /// The number of decimal places the currency has.
        exponent: u8,
    },
    /// The amount does not fit in a signed 64-bit count of minor units.
    #[error("amount out of range")]
    Overflow,
    /// Two amounts in different currencies were combined.
    #[error("currency mismatch: {0} and {1}")]
    CurrencyMismatch(Currency, Currency),
}

/// Active ISO 4217 codes with two decimal places (the common case).
const TWO_DECIMALS: &str = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB \
BOV BRL BSD BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD EGP \
ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR \
KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD \
NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL \
SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD \
XCG YER ZAR ZMW ZWG ZWL";
/// Active ISO 4217 codes without minor units.
const ZERO_DECIMALS: &str = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF";
/// Active ISO 4217 codes with three decimal places.
const THREE_DECIMALS: &str = "BHD IQD JOD KWD LYD OMR TND";
/// Active ISO 4217 codes with four decimal places.
const FOUR_DECIMALS: &str = "CLF UYW";

/// Whether `code` is in `codes`, a sorted list of three-letter codes each followed by one
/// space (the last by nothing): a binary search, as this runs for every price read.
fn listed(codes: &str, code: [u8; 3]) -> bool {
    let bytes = codes.as_bytes();
    let count = bytes.len().div_ceil(4);
    let at = |index: usize| &bytes[index * 4..index * 4 + 3];
    let (mut low, mut high) = (0, count);
    while low < high {
        let middle = low + (high - low) / 2;
        match at(middle).cmp(&code[..]) {
            std::cmp::Ordering::Less => low = middle + 1,
            std::cmp::Ordering::Greater => high = middle,
            std::cmp::Ordering::Equal => return true,
        }
    }
    false
}

/// An ISO 4217 currency, with the number of decimal places of its minor unit.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: [u8; 3],
    exponent: u8,
}

impl Currency {
    /// Canadian dollar, the sandbox store's currency.
    pub const CAD: Currency = Currency {
        code: *b"CAD",
        exponent: 2,
    };
    /// United States dollar.
    pub const USD: Currency = Currency {
        code: *b"USD",
        exponent: 2,
    };

    /// Parses an ISO 4217 alphabetic code (case-insensitive), refusing unknown codes
    /// because their minor unit would be a guess.
    pub fn parse(code: &str) -> Result<Currency, MoneyError> {
        let table = [
            (TWO_DECIMALS, 2),
            (ZERO_DECIMALS, 0),
            (THREE_DECIMALS, 3),
            (FOUR_DECIMALS, 4),
        ];
        // Upper-cased on the stack: this runs for every price an upstream sends.
        if let &[a, b, c] = code.trim().as_bytes()
            && [a, b, c].iter().all(u8::is_ascii_alphabetic)
        {
            let upper = [a, b, c].map(|byte| byte.to_ascii_uppercase());
            for (codes, exponent) in table {
                if listed(codes, upper) {
                    return Ok(Currency {
                        code: upper,
                        exponent,
                    });
                }
            }
        }
        Err(MoneyError::UnknownCurrency(code.chars().take(16).collect()))
    }

    /// The three-letter code, e.g. `"CAD"`.
    pub fn code(&self) -> &str {
        // The bytes were checked to be ASCII uppercase at construction.
        std::str::from_utf8(&self.code).unwrap_or("???")
    }

    /// Decimal places of the minor unit (2 for CAD, 0 for JPY, 3 for KWD).
    pub fn exponent(&self) -> u8 {
        self.exponent
    }

    /// The symbol used in [`Money::formatted`] (English conventions), or `None` when the
    /// code itself is shown.
    fn symbol(&self) -> Option<&'static str> {
        Some(match self.code() {
            "USD" => "$",
            "CAD" => "CA$",
            "AUD" => "A$",
            "NZD" => "NZ$",
            "HKD" => "HK$",
            "MXN" => "MX$",
            "TWD" => "NT$",
            "BRL" => "R$",
            "EUR" => "€",
            "GBP" => "£",
            "JPY" => "¥",
            "CNY" => "CN¥",
            "INR" => "₹",
            "KRW" => "₩",
            "ILS" => "₪",
            "VND" => "₫",
            _ => return None,
        })
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Currency({})", self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::parse(&code).map_err(serde::de::Error::custom)
    }
}

/// An amount of money: a signed count of minor units (cents for CAD) and its currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    /// An amount from a count of minor units (2146 CAD is CA$21.46).
    pub const fn from_minor(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// Zero in the given currency.
    pub const fn zero(currency: Currency) -> Money {
        Money::from_minor(0, currency)
    }

    /// The count of minor units.
    pub const fn minor_units(&self) -> i64 {
        self.minor
    }

    /// The currency.
    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// Whether the amount is strictly negative.
    pub const fn is_negative(&self) -> bool {
        self.minor < 0
    }

    /// Reads a decimal amount in major units (`"18.99"`, `"25"`, `"59.970"`, `"1.5e1"`)
    /// exactly. Trailing zeros beyond the minor unit are accepted; any other extra
    /// precision is refused with [`MoneyError::TooPrecise`].
    pub fn parse_decimal(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let minor = parse_scaled(text, currency.exponent).map_err(|error| match error {
            ScaleError::Syntax => MoneyError::NotADecimal(text.chars().take(40).collect()),
            ScaleError::Inexact => MoneyError::TooPrecise {
                amount: text.chars().take(40).collect(),
                currency,
                exponent: currency.exponent,
            },
            ScaleError::Overflow => MoneyError::Overflow,
        })?;
        Ok(Money::from_minor(minor, currency))
    }

    /// The exact decimal text in major units, with exactly `exponent` decimals
    /// (`"21.46"`, `"1000"` for JPY). This is the form sent to upstream services.
    pub fn to_decimal_string(&self) -> String {
        let digits = Digits::of(self);
        let mut text = String::with_capacity(digits.len() + 2);
        if self.minor < 0 {
            text.push('-');
        }
        text.push_str(digits.whole());
        if !digits.fraction().is_empty() {
            text.push('.');
            text.push_str(digits.fraction());
        }
        text
    }

    /// A human form such as `CA$1,234.56` or `CHF 12.00`, for messages shown to people.
    pub fn formatted(&self) -> String {
        let digits = Digits::of(self);
        let whole = digits.whole();
        let mut text = String::with_capacity(digits.len() + whole.len() / 3 + 8);
        if self.minor < 0 {
            text.push('-');
        }
        match self.currency.symbol() {
            Some(symbol) => text.push_str(symbol),
            None => {
                text.push_str(self.currency.code());
                text.push(' ');
            }
        }
        for (index, digit) in whole.chars().enumerate() {
            if index > 0 && (whole.len() - index).is_multiple_of(3) {
                text.push(',');
            }
            text.push(digit);
        }
        if !digits.fraction().is_empty() {
            text.push('.');
            text.push_str(digits.fraction());
        }
        text
    }

    /// Sum of two amounts of the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::from_minor(minor, self.currency))
    }

    /// Difference of two amounts of the same currency.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let minor = self
            .minor
            .checked_sub(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::from_minor(minor, self.currency))
    }

    /// The amount multiplied by a whole count (a unit price times a quantity).
    pub fn checked_mul(self, count: u32) -> Result<Money, MoneyError> {
        let minor = self
            .minor
            .checked_mul(i64::from(count))
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::from_minor(minor, self.currency))
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl fmt::Debug for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Money({} {})", self.to_decimal_string(), self.currency)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.formatted())
    }
}

/// Wire form: `{"amount": 2146, "currency": "CAD", "formatted": "CA$21.46"}`.
#[derive(Serialize, Deserialize)]
struct MoneyWire {
    amount: i64,
    currency: Currency,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    formatted: Option<String>,
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        MoneyWire {
            amount: self.minor,
            currency: self.currency,
            formatted: Some(self.formatted()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = MoneyWire::deserialize(deserializer)?;
        Ok(Money::from_minor(wire.amount, wire.currency))
    }
}

/// The decimal digits of an amount's magnitude, zero-padded to at least one whole digit,
/// split into major and minor parts; on the stack (amounts are formatted on every answer).
struct Digits {
    /// Right-aligned ASCII digits: `u64::MAX` has 20, and an exponent of up to 4 pads at
    /// most to 5, so 24 bytes always suffice.
    buffer: [u8; 24],
    start: usize,
    exponent: usize,
}

impl Digits {
    fn of(money: &Money) -> Digits {
        let exponent = usize::from(money.currency.exponent);
        let mut buffer = [b'0'; 24];
        let mut rest = money.minor.unsigned_abs();
        let mut start = buffer.len();
        loop {
            start -= 1;
            // `rest % 10` is below 10, so the cast cannot truncate.
            #[allow(clippy::cast_possible_truncation)]
            let digit = (rest % 10) as u8;
            buffer[start] = b'0' + digit;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        // Padding zeros are already in the buffer.
        start = start.min(buffer.len() - (exponent + 1));
        Digits {
            buffer,
            start,
            exponent,
        }
    }

    fn all(&self) -> &str {
        // Only ASCII digits were written.
        std::str::from_utf8(&self.buffer[self.start..]).unwrap_or("0")
    }

    fn len(&self) -> usize {
        self.buffer.len() - self.start
    }

    fn whole(&self) -> &str {
        &self.all()[..self.len() - self.exponent]
    }

    fn fraction(&self) -> &str {
        &self.all()[self.len() - self.exponent..]
    }
}

enum ScaleError {
    Syntax,
    Inexact,
    Overflow,
}

/// Parses `[+-]digits[.digits][(e|E)[+-]digits]` and returns the value times
/// `10^exponent` as an exact integer.
fn parse_scaled(text: &str, exponent: u8) -> Result<i64, ScaleError> {
    let text = text.trim();
    if text.is_empty() || text.len() > 64 {
        return Err(ScaleError::Syntax);
    }
    let (negative, rest) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (mantissa, power) = match rest.find(['e', 'E']) {
        Some(at) => {
            let power: i64 = rest[at + 1..].parse().map_err(|_| ScaleError::Syntax)?;
            (&rest[..at], power)
        }
        None => (rest, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !all_digits(whole) || !all_digits(fraction) {
        return Err(ScaleError::Syntax);
    }
    // value = digits * 10^shift, with shift counting the exponent, fraction and minor unit.
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    let significant = digits.trim_end_matches('0');
    if significant.is_empty() {
        return Ok(0);
    }
    let fraction_len = i64::try_from(fraction.len()).map_err(|_| ScaleError::Syntax)?;
    let trailing_zeros =
        i64::try_from(digits.len() - significant.len()).map_err(|_| ScaleError::Syntax)?;
    // An exponent near i64's ends (`1e9223372036854775807`) must not wrap the arithmetic.
    let shift = power
        .checked_sub(fraction_len)
        .and_then(|s| s.checked_add(i64::from(exponent)))
        .and_then(|s| s.checked_add(trailing_zeros))
        .ok_or(if power < 0 {
            ScaleError::Inexact
        } else {
            ScaleError::Overflow
        })?;
    if shift < 0 {
        return Err(ScaleError::Inexact);
    }
    // More than 38 significant digits, or a shift past 10^38, cannot fit i64 anyway.
    if significant.len() > 38 || shift > 38 {
        return Err(ScaleError::Overflow);
    }
    // The magnitude in i128, so that i64::MIN's (one more than i64::MAX's) fits too.
    let mut magnitude: i128 = significant.parse().map_err(|_| ScaleError::Overflow)?;
    for _ in 0..shift {
        magnitude = magnitude.checked_mul(10).ok_or(ScaleError::Overflow)?;
    }
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| ScaleError::Overflow)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cad(text: &str) -> Result<i64, MoneyError> {
        Money::parse_decimal(text, Currency::CAD).map(|m| m.minor_units())
    }

    #[test]
    fn upstream_decimal_forms_convert_exactly() {
        assert_eq!(cad("18.99"), Ok(1899));
        assert_eq!(cad("25"), Ok(2500));
        assert_eq!(cad("59.970"), Ok(5997));
        assert_eq!(cad("0.1"), Ok(10));
        assert_eq!(cad(".5"), Ok(50));
        assert_eq!(cad("5."), Ok(500));
        assert_eq!(cad("1.5e1"), Ok(1500));
        assert_eq!(cad("1899E-2"), Ok(1899));
        assert_eq!(cad("-2.50"), Ok(-250));
        assert_eq!(cad("0"), Ok(0));
        assert_eq!(cad("0.000"), Ok(0));
    }

    #[test]
    fn values_that_do_not_fit_are_refused_not_rounded() {
        assert!(matches!(cad("18.999"), Err(MoneyError::TooPrecise { .. })));
        assert!(matches!(cad("0.001"), Err(MoneyError::TooPrecise { .. })));
        assert!(matches!(
            cad("99999999999999999999"),
            Err(MoneyError::Overflow)
        ));
        assert!(matches!(cad("1e30"), Err(MoneyError::Overflow)));
        // Exponents at i64's ends neither wrap nor panic.
        assert!(matches!(
            cad("1e9223372036854775807"),
            Err(MoneyError::Overflow)
        ));
        assert!(matches!(
            cad("1.5e9223372036854775807"),
            Err(MoneyError::Overflow)
        ));
        assert!(matches!(
            cad("1e-9223372036854775808"),
            Err(MoneyError::TooPrecise { .. })
        ));
        // The smallest i64 is an amount too, and prints back to itself.
        assert_eq!(cad("-92233720368547758.08"), Ok(i64::MIN));
        assert!(matches!(
            cad("92233720368547758.08"),
            Err(MoneyError::Overflow)
        ));
        for junk in [
            "", "abc", "1.2.3", "--1", "1e", "e5", ".", "1,00", "NaN", "inf",
        ] {
            assert!(
                matches!(cad(junk), Err(MoneyError::NotADecimal(_))),
                "{junk:?} should be refused"
            );
        }
    }

    #[test]
    fn currencies_know_their_minor_unit() {
        assert_eq!(Currency::parse("cad").map(|c| c.exponent()), Ok(2));
        assert_eq!(Currency::parse("JPY").map(|c| c.exponent()), Ok(0));
        assert_eq!(Currency::parse("KWD").map(|c| c.exponent()), Ok(3));
        assert!(Currency::parse("XYZ").is_err());
        assert!(Currency::parse("CA").is_err());
        assert!(Currency::parse("ÇAD").is_err());
    }

    #[test]
    fn currency_lists_are_sorted_single_spaced_codes() {
        for codes in [TWO_DECIMALS, ZERO_DECIMALS, THREE_DECIMALS, FOUR_DECIMALS] {
            assert_eq!((codes.len() + 1) % 4, 0, "{codes}");
            let split: Vec<&str> = codes.split(' ').collect();
            assert!(
                split
                    .iter()
                    .all(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()))
            );
            assert!(split.windows(2).all(|w| w[0] < w[1]), "sorted: {codes}");
            for code in &split {
                let bytes = code.as_bytes();
                assert!(listed(codes, [bytes[0], bytes[1], bytes[2]]), "{code}");
            }
            assert!(!listed(codes, *b"AAA") && !listed(codes, *b"ZZZ") && !listed(codes, *b"QQQ"));
        }
        assert_eq!(Currency::parse(" cad ").unwrap(), Currency::CAD);
        assert!(Currency::parse("CADD").is_err() && Currency::parse("C4D").is_err());
        assert!(Currency::parse("ÇAD").is_err() && Currency::parse("").is_err());
    }

    #[test]
    fn formatted_form_is_what_a_person_expects() {
        let jpy = Currency::parse("JPY").unwrap();
        let chf = Currency::parse("CHF").unwrap();
        assert_eq!(
            Money::from_minor(2146, Currency::CAD).formatted(),
            "CA$21.46"
        );
        assert_eq!(
            Money::from_minor(123_456_789, Currency::USD).formatted(),
            "$1,234,567.89"
        );
        assert_eq!(Money::from_minor(5, Currency::CAD).formatted(), "CA$0.05");
        assert_eq!(
            Money::from_minor(-150, Currency::CAD).formatted(),
            "-CA$1.50"
        );
        assert_eq!(Money::from_minor(1000, jpy).formatted(), "¥1,000");
        assert_eq!(Money::from_minor(1200, chf).formatted(), "CHF 12.00");
        let kwd = Currency::parse("kwd").unwrap();
        assert_eq!(Money::from_minor(7, kwd).formatted(), "KWD 0.007");
        assert_eq!(
            Money::from_minor(i64::MIN, Currency::USD).formatted(),
            "-$92,233,720,368,547,758.08"
        );
        assert_eq!(Money::from_minor(0, jpy).formatted(), "¥0");
    }

    #[test]
    fn serializes_as_minor_units_with_currency_and_formatted() {
        let json = serde_json::to_value(Money::from_minor(2146, Currency::CAD)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"amount": 2146, "currency": "CAD", "formatted": "CA$21.46"})
        );
        let back: Money = serde_json::from_value(json).unwrap();
        assert_eq!(back, Money::from_minor(2146, Currency::CAD));
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Money::from_minor(i64::MAX, Currency::CAD);
        assert_eq!(
            a.checked_add(Money::from_minor(1, Currency::CAD)),
            Err(MoneyError::Overflow)
        );
        assert!(matches!(
            a.checked_add(Money::zero(Currency::USD)),
            Err(MoneyError::CurrencyMismatch(..))
        ));
        assert_eq!(a.checked_mul(2), Err(MoneyError::Overflow));
        assert_eq!(
            Money::from_minor(1899, Currency::CAD).checked_mul(3),
            Ok(Money::from_minor(5697, Currency::CAD))
        );
    }

    /// `i64` values with the edges weighted in: the extremes, zero, powers of ten and their
    /// neighbours, as well as anything in between.
    fn minor_units() -> impl Strategy<Value = i64> {
        prop_oneof![
            3 => any::<i64>(),
            1 => prop::sample::select(vec![i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX]),
            1 => (0u32..19, -1i64..=1, any::<bool>()).prop_map(|(power, nudge, negative)| {
                let value = 10i64.pow(power).saturating_add(nudge);
                if negative { -value } else { value }
            }),
        ]
    }

    /// Decimal texts with exponents, near the edges of what parses.
    fn exponent_forms() -> impl Strategy<Value = String> {
        (
            "[0-9]{0,25}",
            "[0-9]{0,25}",
            prop_oneof![
                Just(i64::MIN),
                Just(i64::MAX),
                Just(i64::MAX - 1),
                -40i64..40,
                any::<i64>()
            ],
            any::<bool>(),
        )
            .prop_map(|(whole, fraction, power, negative)| {
                let sign = if negative { "-" } else { "" };
                format!("{sign}{whole}.{fraction}e{power}")
            })
    }

    proptest! {
        #[test]
        fn decimal_text_round_trips(minor in minor_units(), exponent in 0u8..=4) {
            let currency = match exponent {
                0 => Currency::parse("JPY").unwrap(),
                3 => Currency::parse("KWD").unwrap(),
                4 => Currency::parse("CLF").unwrap(),
                _ => Currency::CAD,
            };
            let money = Money::from_minor(minor, currency);
            prop_assert_eq!(Money::parse_decimal(&money.to_decimal_string(), currency), Ok(money));
        }

        #[test]
        fn json_round_trips(minor in minor_units()) {
            let money = Money::from_minor(minor, Currency::USD);
            let text = serde_json::to_string(&money).unwrap();
            prop_assert_eq!(serde_json::from_str::<Money>(&text).unwrap(), money);
        }

        #[test]
        fn shortest_float_text_of_cents_parses_back_to_the_cents(cents in 0i64..10_000_000_000) {
            // Upstream JSON numbers reach us as the shortest text that round-trips an f64;
            // for cent amounts that text is the exact decimal.
            #[allow(clippy::cast_precision_loss)]
            let as_float = cents as f64 / 100.0;
            let text = serde_json::Number::from_f64(as_float).unwrap().to_string();
            prop_assert_eq!(cad(&text), Ok(cents));
        }

        #[test]
        fn parsing_never_panics(text in "\\PC{0,80}") {
            let _ = cad(&text);
        }

        #[test]
        fn exponent_forms_parse_exactly_or_are_refused(text in exponent_forms()) {
            // Never a panic, never a wrapped value: whatever parses prints back to the same
            // amount.
            if let Ok(minor) = cad(&text) {
                let money = Money::from_minor(minor, Currency::CAD);
                prop_assert_eq!(cad(&money.to_decimal_string()), Ok(minor));
            }
        }
    }
}
