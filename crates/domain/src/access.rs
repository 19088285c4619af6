//! Integration API keys and scopes.
//!
//! A key's secret reads `sacp_<key id>_<52 base32 characters>`: a recognisable prefix, the
//! key's public id (so a presented secret finds its record without a search), and 256 random
//! bits. Only the SHA-256 of the secret is stored; presented secrets are compared with it in
//! constant time. SHA-256 suffices for a 256-bit random secret (there is nothing to guess).

use std::collections::BTreeSet;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::ids::{self, ApiKeyId, RandomSource};
use crate::validation::ValidationErrors;

/// What a key may do (least privilege).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    /// Browse products.
    #[serde(rename = "catalog:read")]
    CatalogRead,
    /// Search products.
    #[serde(rename = "search:read")]
    SearchRead,
    /// Read checkouts and payment status.
    #[serde(rename = "checkout:read")]
    CheckoutRead,
    /// Create, change, cancel and pay checkouts.
    #[serde(rename = "checkout:write")]
    CheckoutWrite,
    /// Read orders (with the person's token).
    #[serde(rename = "orders:read")]
    OrdersRead,
    /// Operate the gateway.
    #[serde(rename = "admin")]
    Admin,
}

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 6] = [
        Scope::CatalogRead,
        Scope::SearchRead,
        Scope::CheckoutRead,
        Scope::CheckoutWrite,
        Scope::OrdersRead,
        Scope::Admin,
    ];

    /// Wire name, e.g. `checkout:write`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::CatalogRead => "catalog:read",
            Scope::SearchRead => "search:read",
            Scope::CheckoutRead => "checkout:read",
            Scope::CheckoutWrite => "checkout:write",
            Scope::OrdersRead => "orders:read",
            Scope::Admin => "admin",
        }
    }

    /// Parses a wire name.
    pub fn parse(text: &str) -> Option<Scope> {
        Scope::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Prefix of every key secret.
pub const SECRET_PREFIX: &str = "sacp_";
const SECRET_RANDOM_BYTES: usize = 32;
/// Characters of a generated secret's random part: 256 bits in base32.
const SECRET_RANDOM_CHARS: usize = (SECRET_RANDOM_BYTES * 8).div_ceil(5);

/// A key's secret, shown once at creation or rotation; prints as `***`.
#[derive(Clone)]
pub struct ApiKeySecret(SecretString);

impl ApiKeySecret {
    /// The secret, to hand to the integration once.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKeySecret(***)")
    }
}

/// The SHA-256 of a secret: what storage keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SecretHash(pub [u8; 32]);

impl SecretHash {
    /// The hash of `secret`.
    pub fn of(secret: &str) -> SecretHash {
        SecretHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Compares with a presented secret's hash in constant time.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretHash(…)")
    }
}

/// Shortest secret an operator may choose for the bootstrap key.
pub const MIN_OPERATOR_SECRET_LEN: usize = 32;

/// The key id a presented secret names: the id inside a generated secret
/// (`sacp_<id>_<random>`), or for an operator-chosen secret (the bootstrap key) an id derived
/// from its hash. `None` when the text cannot be a key secret at all.
pub fn key_id_of(secret: &str) -> Option<ApiKeyId> {
    key_bits_of(secret).map(ApiKeyId::from_bits)
}

/// The 128 bits of the id [`key_id_of`] finds (see [`ApiKeyId::to_bits`]), found without
/// allocating: what a cache of keys looks a presented secret up by.
pub fn key_bits_of(secret: &str) -> Option<[u8; ids::ID_RANDOM_BYTES]> {
    // `<id>_<random>`: both parts have fixed lengths, so the `_` is not searched for.
    let generated = secret.strip_prefix(SECRET_PREFIX).and_then(|rest| {
        let id = rest.get(..ids::ENCODED_LEN)?;
        let random = rest.get(ids::ENCODED_LEN..)?.strip_prefix('_')?;
        let random_ok = random.len() == SECRET_RANDOM_CHARS && ids::is_base32(random);
        random_ok.then(|| ids::encoded_bits(id)).flatten()
    });
    generated.or_else(|| (secret.len() >= MIN_OPERATOR_SECRET_LEN).then(|| derived_bits(secret)))
}

/// The id of a key whose secret an operator chose: 128 bits of a hash of the secret (a
/// different hash input than the stored hash, so the id reveals nothing about it).
fn derived_bits(secret: &str) -> [u8; ids::ID_RANDOM_BYTES] {
    let digest: [u8; 32] = Sha256::new()
        .chain_update(b"key-id:")
        .chain_update(secret.as_bytes())
        .finalize()
        .into();
    let mut bits = [0u8; ids::ID_RANDOM_BYTES];
    bits.copy_from_slice(&digest[..ids::ID_RANDOM_BYTES]);
    bits
}

fn new_secret(id: &ApiKeyId, random: &dyn RandomSource) -> (ApiKeySecret, SecretHash) {
    let mut bytes = [0u8; SECRET_RANDOM_BYTES];
    random.fill_bytes(&mut bytes);
    let id_part = id.as_str().trim_start_matches(ApiKeyId::PREFIX);
    let secret = format!("{SECRET_PREFIX}{id_part}_{}", ids::base32(&bytes));
    let hash = SecretHash::of(&secret);
    (ApiKeySecret(SecretString::from(secret)), hash)
}

/// Where a key is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Usable.
    Active,
    /// Revoked by an operator. Final.
    Revoked,
    /// Past its expiry.
    Expired,
}

impl KeyStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Revoked => "revoked",
            KeyStatus::Expired => "expired",
        }
    }
}

/// Why a presented secret was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// The secret is not this key's (or not a key secret at all).
    #[error("the API key is not valid")]
    Invalid,
    /// The key was revoked.
    #[error("the API key was revoked")]
    Revoked,
    /// The key expired.
    #[error("the API key expired")]
    Expired,
    /// An operator disabled the key (kill switch).
    #[error("the API key is disabled")]
    Disabled,
}

/// Limits of one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimits {
    /// Requests per minute.
    pub requests_per_minute: u32,
    /// Requests per day.
    pub daily_quota: u32,
}

impl KeyLimits {
    /// The default read tier: 600 per minute, 100,000 per day.
    pub const READ_TIER: KeyLimits = KeyLimits {
        requests_per_minute: 600,
        daily_quota: 100_000,
    };

    /// Checks the limits are usable (1 to 1,000,000 per minute, 1 to 100,000,000 per day).
    pub fn validate(self) -> Result<KeyLimits, ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if !(1..=1_000_000).contains(&self.requests_per_minute) {
            errors.push(
                "requests_per_minute",
                "out_of_range",
                "must be between 1 and 1000000",
            );
        }
        if !(1..=100_000_000).contains(&self.daily_quota) {
            errors.push(
                "daily_quota",
                "out_of_range",
                "must be between 1 and 100000000",
            );
        }
        errors.into_result(self)
    }
}

/// What an operator asks for when creating a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    /// Integration name, e.g. `ChatGPT shopping action`.
    pub name: String,
    /// Organisation the integration belongs to.
    pub org: String,
    /// Scopes granted.
    pub scopes: BTreeSet<Scope>,
    /// Limits.
    pub limits: KeyLimits,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
}

fn label(errors: &mut ValidationErrors, field: &str, value: &str) {
    let value = value.trim();
    if value.is_empty()
        || value.chars().count() > 100
        || value.chars().any(char::is_control)
        || crate::validation::has_hidden_characters(value)
    {
        errors.push(
            field,
            "invalid_format",
            "must be 1 to 100 printable characters",
        );
    }
}

impl NewKey {
    /// Validates every field.
    pub fn validate(&self, now: DateTime<Utc>) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        label(&mut errors, "name", &self.name);
        label(&mut errors, "org", &self.org);
        if self.scopes.is_empty() {
            errors.push(
                "scopes",
                "too_few",
                "grant at least one scope, e.g. [\"catalog:read\", \"search:read\"]",
            );
        }
        if let Err(limits) = self.limits.validate() {
            errors.append(limits);
        }
        if self.expires_at.is_some_and(|at| at <= now) {
            errors.push("expires_at", "out_of_range", "must be in the future");
        }
        errors.into_result(())
    }
}

/// Plain data of a key, for storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// Public id.
    pub id: ApiKeyId,
    /// Integration name.
    pub name: String,
    /// Organisation.
    pub org: String,
    /// Scopes.
    pub scopes: BTreeSet<Scope>,
    /// Limits.
    pub limits: KeyLimits,
    /// Optional expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Kill switch for this key.
    pub disabled: bool,
    /// Hash of the current secret.
    pub secret_hash: SecretHash,
    /// Hash of the previous secret and until when it still works (rotation grace).
    pub previous: Option<(SecretHash, DateTime<Utc>)>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last successful authentication, as last recorded.
    pub last_used_at: Option<DateTime<Utc>>,
    /// Compare-and-swap version; 0 before the first save.
    pub version: u64,
}

/// An integration API key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    record: ApiKeyRecord,
}

impl ApiKey {
    /// Creates a key and its secret (returned once; only its hash is kept).
    pub fn create(
        new: NewKey,
        now: DateTime<Utc>,
        random: &dyn RandomSource,
    ) -> Result<(ApiKey, ApiKeySecret), ValidationErrors> {
        new.validate(now)?;
        let id = ApiKeyId::generate(random);
        let (secret, hash) = new_secret(&id, random);
        let key = ApiKey {
            record: ApiKeyRecord {
                id,
                name: new.name.trim().to_owned(),
                org: new.org.trim().to_owned(),
                scopes: new.scopes,
                limits: new.limits,
                expires_at: new.expires_at,
                revoked_at: None,
                disabled: false,
                secret_hash: hash,
                previous: None,
                created_at: now,
                last_used_at: None,
                version: 0,
            },
        };
        Ok((key, secret))
    }

    /// A key for a secret the operator chose (`SACP_BOOTSTRAP_API_KEY`, at least
    /// [`MIN_OPERATOR_SECRET_LEN`] characters); its id is derived from the secret, so every
    /// replica bootstrapping the same secret finds the same key.
    pub fn with_operator_secret(
        new: NewKey,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Result<ApiKey, ValidationErrors> {
        new.validate(now)?;
        if secret.len() < MIN_OPERATOR_SECRET_LEN
            || secret.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            let mut errors = ValidationErrors::default();
            errors.push(
                "secret",
                "too_short",
                format!("must be at least {MIN_OPERATOR_SECRET_LEN} characters without spaces"),
            );
            return Err(errors);
        }
        Ok(ApiKey {
            record: ApiKeyRecord {
                id: ApiKeyId::from_bits(derived_bits(secret)),
                name: new.name.trim().to_owned(),
                org: new.org.trim().to_owned(),
                scopes: new.scopes,
                limits: new.limits,
                expires_at: new.expires_at,
                revoked_at: None,
                disabled: false,
                secret_hash: SecretHash::of(secret),
                previous: None,
                created_at: now,
                last_used_at: None,
                version: 0,
            },
        })
    }

    /// Restores a key from storage.
    pub fn restore(record: ApiKeyRecord) -> ApiKey {
        ApiKey { record }
    }

    /// The plain data.
    pub fn record(&self) -> &ApiKeyRecord {
        &self.record
    }
    /// Public id.
    pub fn id(&self) -> &ApiKeyId {
        &self.record.id
    }
    /// Organisation.
    pub fn org(&self) -> &str {
        &self.record.org
    }
    /// Scopes.
    pub fn scopes(&self) -> &BTreeSet<Scope> {
        &self.record.scopes
    }
    /// Limits.
    pub fn limits(&self) -> KeyLimits {
        self.record.limits
    }
    /// Compare-and-swap version.
    pub fn version(&self) -> u64 {
        self.record.version
    }
    /// Sets the version after storage accepted a write. Only repositories call this.
    pub fn set_version(&mut self, version: u64) {
        self.record.version = version;
    }

    /// Where the key is at `now`.
    pub fn status(&self, now: DateTime<Utc>) -> KeyStatus {
        if self.record.revoked_at.is_some() {
            KeyStatus::Revoked
        } else if self.record.expires_at.is_some_and(|at| now >= at) {
            KeyStatus::Expired
        } else {
            KeyStatus::Active
        }
    }

    /// Checks a presented secret at `now`: the current secret, or the previous one within its
    /// rotation grace; refused once revoked, expired or disabled.
    pub fn authenticate(&self, presented: &str, now: DateTime<Utc>) -> Result<(), AuthFailure> {
        let hash = SecretHash::of(presented);
        let current = self.record.secret_hash.matches(&hash);
        let previous = self
            .record
            .previous
            .is_some_and(|(old, until)| old.matches(&hash) && now < until);
        if !current && !previous {
            return Err(AuthFailure::Invalid);
        }
        match self.status(now) {
            KeyStatus::Revoked => Err(AuthFailure::Revoked),
            KeyStatus::Expired => Err(AuthFailure::Expired),
            KeyStatus::Active if self.record.disabled => Err(AuthFailure::Disabled),
            KeyStatus::Active => Ok(()),
        }
    }

    /// Whether an operator may still change or rotate the key at `now`: a revoked key is
    /// final, and an expired one can no longer be used (create a new key instead). Revoking
    /// either again is allowed (it changes nothing).
    pub fn ensure_changeable(&self, now: DateTime<Utc>) -> Result<(), KeyStatus> {
        match self.status(now) {
            KeyStatus::Active => Ok(()),
            ended => Err(ended),
        }
    }

    /// Whether the key grants `scope`.
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.record.scopes.contains(&scope)
    }

    /// Issues a new secret; the old one keeps working for `grace` (0 = not at all).
    pub fn rotate(
        &mut self,
        grace: Duration,
        now: DateTime<Utc>,
        random: &dyn RandomSource,
    ) -> Result<ApiKeySecret, AuthFailure> {
        if self.status(now) == KeyStatus::Revoked {
            return Err(AuthFailure::Revoked);
        }
        let (secret, hash) = new_secret(&self.record.id, random);
        let grace = grace.max(Duration::zero());
        self.record.previous =
            (grace > Duration::zero()).then(|| (self.record.secret_hash, now + grace));
        self.record.secret_hash = hash;
        Ok(secret)
    }

    /// Revokes the key for good (idempotent).
    pub fn revoke(&mut self, now: DateTime<Utc>) {
        if self.record.revoked_at.is_none() {
            self.record.revoked_at = Some(now);
        }
        self.record.previous = None;
    }

    /// Replaces scopes, limits or the disabled switch.
    pub fn update(
        &mut self,
        scopes: Option<BTreeSet<Scope>>,
        limits: Option<KeyLimits>,
        disabled: Option<bool>,
    ) -> Result<(), ValidationErrors> {
        let mut errors = ValidationErrors::default();
        if scopes.as_ref().is_some_and(BTreeSet::is_empty) {
            errors.push("scopes", "too_few", "grant at least one scope");
        }
        if let Some(Err(e)) = limits.map(KeyLimits::validate) {
            errors.append(e);
        }
        errors.into_result(())?;
        if let Some(scopes) = scopes {
            self.record.scopes = scopes;
        }
        if let Some(limits) = limits {
            self.record.limits = limits;
        }
        if let Some(disabled) = disabled {
            self.record.disabled = disabled;
        }
        Ok(())
    }

    /// When the key was last used, as recorded (coarsely: callers write it at most once a
    /// minute).
    pub fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.record.last_used_at
    }

    /// Records a use at `at`; an earlier time never replaces a later one.
    pub fn note_use(&mut self, at: DateTime<Utc>) {
        if self.record.last_used_at.is_none_or(|last| last < at) {
            self.record.last_used_at = Some(at);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkout::tests::{Fixed, t};

    struct Counter(std::sync::atomic::AtomicU8);
    impl RandomSource for Counter {
        fn fill_bytes(&self, dest: &mut [u8]) {
            let n = self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            dest.iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = n.wrapping_add(u8::try_from(i % 256).unwrap_or(0)));
        }
    }

    fn new_key() -> NewKey {
        NewKey {
            name: "ChatGPT shopping".into(),
            org: "acme".into(),
            scopes: [Scope::CatalogRead, Scope::SearchRead]
                .into_iter()
                .collect(),
            limits: KeyLimits::READ_TIER,
            expires_at: Some(t(1000)),
        }
    }

    #[test]
    fn key_names_and_organisations_are_plain_text() {
        let now = chrono::DateTime::from_timestamp(1_790_000_000, 0).unwrap_or_default();
        for (name, org) in [("\u{202E}evil", "acme"), ("agent", "ac\u{200B}me")] {
            let new = NewKey {
                name: name.into(),
                org: org.into(),
                scopes: [Scope::CatalogRead].into_iter().collect(),
                limits: KeyLimits::READ_TIER,
                expires_at: None,
            };
            assert!(new.validate(now).is_err(), "{name:?} {org:?}");
        }
    }

    #[test]
    fn a_secret_is_recognisable_names_its_key_and_is_stored_only_as_a_hash() {
        let random = Counter(0.into());
        let (key, secret) = ApiKey::create(new_key(), t(0), &random).unwrap();
        assert!(secret.expose().starts_with("sacp_"));
        assert_eq!(key_id_of(secret.expose()).as_ref(), Some(key.id()));
        assert_eq!(secret.expose().len(), 5 + 26 + 1 + 52);
        assert!(!format!("{key:?}{secret:?}").contains(secret.expose()));
        assert_eq!(key.authenticate(secret.expose(), t(1)), Ok(()));
        assert_eq!(
            key.authenticate("sacp_wrong", t(1)),
            Err(AuthFailure::Invalid)
        );
        assert_eq!(key_id_of("sacp_nope"), None);
        assert_eq!(key_id_of("not a key"), None);
    }

    #[test]
    fn expiry_revocation_and_disabling_refuse_the_right_secret() {
        let random = Counter(0.into());
        let (mut key, secret) = ApiKey::create(new_key(), t(0), &random).unwrap();
        assert_eq!(
            key.authenticate(secret.expose(), t(1000)),
            Err(AuthFailure::Expired)
        );
        assert_eq!(key.status(t(1000)), KeyStatus::Expired);
        key.update(None, None, Some(true)).unwrap();
        assert_eq!(
            key.authenticate(secret.expose(), t(1)),
            Err(AuthFailure::Disabled)
        );
        key.revoke(t(2));
        assert_eq!(
            key.authenticate(secret.expose(), t(3)),
            Err(AuthFailure::Revoked)
        );
        assert_eq!(key.status(t(3)), KeyStatus::Revoked);
    }

    #[test]
    fn a_revoked_or_expired_key_can_no_longer_be_changed() {
        let random = Counter(0.into());
        let (mut key, _) = ApiKey::create(new_key(), t(0), &random).unwrap();
        assert_eq!(key.ensure_changeable(t(999)), Ok(()));
        assert_eq!(key.ensure_changeable(t(1000)), Err(KeyStatus::Expired));
        key.revoke(t(5));
        assert_eq!(key.ensure_changeable(t(6)), Err(KeyStatus::Revoked));
    }

    #[test]
    fn rotation_keeps_the_old_secret_for_the_grace_period_only() {
        let random = Counter(0.into());
        let (mut key, old) = ApiKey::create(new_key(), t(0), &random).unwrap();
        let new = key.rotate(Duration::seconds(60), t(10), &random).unwrap();
        assert_ne!(old.expose(), new.expose());
        assert_eq!(key.authenticate(new.expose(), t(11)), Ok(()));
        assert_eq!(key.authenticate(old.expose(), t(69)), Ok(()));
        assert_eq!(
            key.authenticate(old.expose(), t(70)),
            Err(AuthFailure::Invalid)
        );
        let newest = key.rotate(Duration::zero(), t(80), &random).unwrap();
        assert_eq!(
            key.authenticate(new.expose(), t(80)),
            Err(AuthFailure::Invalid),
            "grace 0: at once"
        );
        assert_eq!(key.authenticate(newest.expose(), t(80)), Ok(()));
    }

    #[test]
    fn bad_key_requests_are_refused_field_by_field() {
        let random = Fixed(9);
        let mut request = new_key();
        request.name = " ".into();
        request.scopes.clear();
        request.limits.requests_per_minute = 0;
        request.expires_at = Some(t(-1));
        let errors = ApiKey::create(request, t(0), &random).unwrap_err();
        let fields: Vec<&str> = errors.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "scopes", "requests_per_minute", "expires_at"]
        );
    }

    #[test]
    fn an_operator_chosen_secret_finds_its_key() {
        let secret = "an-operator-chosen-secret-of-40-characters";
        let key = ApiKey::with_operator_secret(new_key(), secret, t(0)).unwrap();
        assert_eq!(key_id_of(secret).as_ref(), Some(key.id()));
        assert_eq!(
            ApiKey::with_operator_secret(new_key(), secret, t(5))
                .unwrap()
                .id(),
            key.id(),
            "deterministic"
        );
        assert_eq!(key.authenticate(secret, t(1)), Ok(()));
        assert!(ApiKey::with_operator_secret(new_key(), "short", t(0)).is_err());
        assert_eq!(key_id_of("short"), None);
    }

    #[test]
    fn an_operator_chosen_secret_keeps_the_id_it_always_had() {
        // The derivation bootstrap keys in existing databases were created with: the first
        // 128 bits of SHA-256("key-id:" + secret).
        let secret = "an-operator-chosen-secret-of-40-characters";
        let digest = Sha256::digest(format!("key-id:{secret}"));
        let bits: [u8; 16] = digest[..16].try_into().unwrap();
        assert_eq!(key_id_of(secret), Some(ApiKeyId::from_bits(bits)));
        assert_eq!(key_bits_of(secret), Some(bits));
        let (id, _) = new_secret(&ApiKeyId::from_bits([7; 16]), &Counter(0.into()));
        assert_eq!(
            key_bits_of(id.expose()),
            Some([7; 16]),
            "a generated secret's own id"
        );
    }

    #[test]
    fn only_a_well_formed_generated_secret_names_the_id_inside_it() {
        let (secret, _) = new_secret(&ApiKeyId::from_bits([9; 16]), &Counter(0.into()));
        let secret = secret.expose();
        let id_end = SECRET_PREFIX.len() + 26;
        let respelled = [
            format!("{secret}a"),
            secret[..secret.len() - 1].to_owned(),
            format!("{}A{}", &secret[..id_end + 1], &secret[id_end + 2..]),
            format!("{}-{}", &secret[..id_end], &secret[id_end + 1..]),
            format!("{}_{}", &secret[..id_end - 1], &secret[id_end..]),
            format!("{}é{}", &secret[..id_end - 1], &secret[id_end + 1..]),
            format!("{}é{}", &secret[..id_end], &secret[id_end + 2..]),
        ];
        for text in respelled {
            // Long enough to be an operator's own secret: it names the key hashed from it.
            assert_ne!(key_bits_of(&text), Some([9; 16]), "{text}");
            assert_eq!(key_bits_of(&text), Some(derived_bits(&text)), "{text}");
        }
    }

    #[test]
    fn scopes_have_stable_wire_names() {
        for scope in Scope::ALL {
            assert_eq!(Scope::parse(scope.as_str()), Some(scope));
            assert_eq!(
                serde_json::to_value(scope).unwrap(),
                serde_json::json!(scope.as_str())
            );
        }
    }
}
