//! The catalog cache: rendered answers of `GET /products` and `GET /products/{id}`, kept for
//! a short time-to-live, with strong `ETag`s so that agents can revalidate with
//! `If-None-Match` and get `304 Not Modified`.
//!
//! Why this is safe for money: a cached page only shows prices. What a person pays is the
//! store's total for the checkout session, priced by the store when the checkout is created
//! or changed, and shown again in the wallet; a stale page cannot change an amount.
//!
//! Invalidation: entries expire after the TTL; the whole cache is dropped as soon as the
//! store reports an item unavailable (proof that the catalog changed under it). Errors are
//! never cached. The number of entries is bounded, so arbitrary queries cannot grow memory.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hasher};
use std::sync::{Arc, RwLock};

use actix_web::http::header::{self, HeaderValue};
use actix_web::web::Bytes;
use actix_web::{HttpRequest, HttpResponse};
use chrono::{DateTime, Duration, Utc};
use sacp_app::AppError;

/// Most distinct answers kept (a page of 100 products is about 40 KiB).
pub const MAX_ENTRIES: usize = 1024;

/// One rendered answer.
#[derive(Debug)]
pub struct Rendered {
    /// The JSON body.
    pub body: Bytes,
    /// Its strong entity tag, quoted.
    pub etag: HeaderValue,
    expires_at: DateTime<Utc>,
}

impl Rendered {
    /// `304 Not Modified` when the request's `If-None-Match` names this answer's tag (or
    /// `*`), else `200` with the body. Both carry the `ETag`.
    pub fn respond(&self, request: &HttpRequest) -> HttpResponse {
        let mut response = if matches_if_none_match(request, &self.etag) {
            HttpResponse::NotModified().finish()
        } else {
            HttpResponse::Ok()
                .content_type("application/json")
                .body(self.body.clone())
        };
        let headers = response.headers_mut();
        headers.insert(header::ETAG, self.etag.clone());
        // Agents may keep the answer but must revalidate it (cheaply, with the tag).
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, no-cache"),
        );
        response
    }
}

/// Whether `If-None-Match` lists `etag` (weak comparison, RFC 9110 §13.1.2) or is `*`.
fn matches_if_none_match(request: &HttpRequest, etag: &HeaderValue) -> bool {
    let ours = etag.as_bytes();
    request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .any(|candidate| {
            candidate == "*" || candidate.strip_prefix("W/").unwrap_or(candidate).as_bytes() == ours
        })
}

/// The strong entity tag of a body: a 64-bit hash of its bytes, quoted. Only equality
/// matters; a tag changes whenever the body does.
pub fn etag_of(body: &[u8]) -> HeaderValue {
    let mut hasher = DefaultHasher::new();
    hasher.write(body);
    let tag = format!("\"{:016x}\"", hasher.finish());
    HeaderValue::from_str(&tag).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

/// What a cached answer is of: one product, by its id as the router decoded it, or a page
/// of the catalog, by its query's canonical text. Each kind is kept apart, so that no id
/// can name a page; a request's key borrows its text, so that a cached answer is found
/// without building one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogKey<'a> {
    /// `GET /products/{id}`.
    Product(&'a str),
    /// `GET /products` with this query.
    Page(&'a str),
}

/// The answers kept, by kind.
#[derive(Debug, Default)]
struct Entries {
    products: HashMap<String, Arc<Rendered>>,
    pages: HashMap<String, Arc<Rendered>>,
}

impl Entries {
    /// The map `key`'s kind is kept in, and the text it is kept by.
    fn of<'k>(&self, key: CatalogKey<'k>) -> (&HashMap<String, Arc<Rendered>>, &'k str) {
        match key {
            CatalogKey::Product(id) => (&self.products, id),
            CatalogKey::Page(query) => (&self.pages, query),
        }
    }

    fn of_mut<'k>(
        &mut self,
        key: CatalogKey<'k>,
    ) -> (&mut HashMap<String, Arc<Rendered>>, &'k str) {
        match key {
            CatalogKey::Product(id) => (&mut self.products, id),
            CatalogKey::Page(query) => (&mut self.pages, query),
        }
    }

    fn get(&self, key: CatalogKey<'_>) -> Option<&Arc<Rendered>> {
        let (map, text) = self.of(key);
        map.get(text)
    }

    fn len(&self) -> usize {
        self.products.len() + self.pages.len()
    }

    /// Forgets the answers expired at `now`.
    fn retain_live(&mut self, now: DateTime<Utc>) {
        self.products.retain(|_, kept| kept.expires_at > now);
        self.pages.retain(|_, kept| kept.expires_at > now);
    }
}

/// Rendered catalog answers by request (see the module documentation).
#[derive(Debug)]
pub struct CatalogCache {
    ttl: Duration,
    entries: RwLock<Entries>,
}

impl CatalogCache {
    /// A cache keeping answers for `ttl`; zero keeps nothing (every read goes to the store,
    /// answers still carry an `ETag`).
    pub fn new(ttl: std::time::Duration) -> CatalogCache {
        CatalogCache {
            ttl: Duration::from_std(ttl).unwrap_or(Duration::zero()),
            entries: RwLock::default(),
        }
    }

    /// Whether answers are kept at all.
    pub fn enabled(&self) -> bool {
        self.ttl > Duration::zero()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer cached for `key` if it has not expired at `now`.
    pub fn get(&self, key: CatalogKey<'_>, now: DateTime<Utc>) -> Option<Arc<Rendered>> {
        if !self.enabled() {
            return None;
        }
        self.read()
            .get(key)
            .filter(|rendered| rendered.expires_at > now)
            .cloned()
    }

    /// Renders `body` (tags it) and keeps it for `key` until the TTL passes. When the cache
    /// is full, expired entries go first; if none has expired the answer is not kept.
    pub fn put(&self, key: CatalogKey<'_>, body: Vec<u8>, now: DateTime<Utc>) -> Arc<Rendered> {
        let rendered = Arc::new(Rendered {
            etag: etag_of(&body),
            body: Bytes::from(body),
            expires_at: now + self.ttl,
        });
        if self.enabled() {
            let mut entries = self.write();
            let known = entries.get(key).is_some();
            if entries.len() >= MAX_ENTRIES && !known {
                entries.retain_live(now);
            }
            if entries.len() < MAX_ENTRIES || known {
                let (map, text) = entries.of_mut(key);
                map.insert(text.to_owned(), rendered.clone());
            }
        }
        rendered
    }

    /// Learns from a failed checkout call: when the store reports items unavailable, the
    /// catalog changed under the cache, so every answer is forgotten.
    pub fn note(&self, error: &AppError) {
        if matches!(error, AppError::ItemsUnavailable(_)) && !self.is_empty() {
            self.clear();
        }
    }

    /// Forgets every answer (the store said the catalog changed).
    pub fn clear(&self) {
        *self.write() = Entries::default();
    }

    /// Answers currently kept (expired ones included until they are replaced or purged).
    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CatalogKey::{Page, Product};
    use actix_web::test::TestRequest;

    fn t(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    #[test]
    fn answers_live_for_the_ttl_only() {
        let cache = CatalogCache::new(std::time::Duration::from_secs(5));
        cache.put(Page("a"), b"{}".to_vec(), t(0));
        assert!(cache.get(Page("a"), t(4)).is_some());
        assert!(cache.get(Page("a"), t(5)).is_none(), "expired at the TTL");
        assert!(cache.get(Page("b"), t(0)).is_none());
        cache.clear();
        assert!(cache.get(Page("a"), t(1)).is_none(), "cleared");
    }

    #[test]
    fn a_product_and_a_page_of_the_same_text_are_different_answers() {
        let cache = CatalogCache::new(std::time::Duration::from_secs(5));
        cache.put(Page("list\nx"), b"page".to_vec(), t(0));
        assert!(
            cache.get(Product("list\nx"), t(0)).is_none(),
            "no id names a page"
        );
        cache.put(Product("list\nx"), b"product".to_vec(), t(0));
        assert_eq!(&cache.get(Page("list\nx"), t(0)).unwrap().body[..], b"page");
        assert_eq!(
            &cache.get(Product("list\nx"), t(0)).unwrap().body[..],
            b"product"
        );
        assert_eq!(cache.len(), 2);
        cache.clear();
        assert!(cache.is_empty());
    }

    #[test]
    fn a_zero_ttl_keeps_nothing_but_still_tags() {
        let cache = CatalogCache::new(std::time::Duration::ZERO);
        let rendered = cache.put(Page("a"), b"{}".to_vec(), t(0));
        assert_eq!(rendered.etag, etag_of(b"{}"));
        assert!(cache.get(Page("a"), t(0)).is_none());
        assert!(cache.is_empty());
    }

    #[test]
    fn the_cache_is_bounded_and_makes_room_from_expired_answers() {
        let cache = CatalogCache::new(std::time::Duration::from_secs(5));
        for n in 0..MAX_ENTRIES {
            cache.put(Page(&format!("k{n}")), b"x".to_vec(), t(0));
        }
        cache.put(Page("late"), b"x".to_vec(), t(1));
        assert!(
            cache.get(Page("late"), t(1)).is_none(),
            "full of live answers"
        );
        assert_eq!(cache.len(), MAX_ENTRIES);
        cache.put(Page("later"), b"x".to_vec(), t(10));
        assert!(
            cache.get(Page("later"), t(10)).is_some(),
            "expired answers made room"
        );
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn tags_follow_the_body() {
        assert_eq!(etag_of(b"same"), etag_of(b"same"));
        assert_ne!(etag_of(b"one"), etag_of(b"two"));
        let tag = etag_of(b"one");
        let text = tag.to_str().unwrap();
        assert!(text.starts_with('"') && text.ends_with('"') && text.len() == 18);
    }

    #[test]
    fn if_none_match_is_compared_weakly_and_accepts_lists_and_star() {
        let cache = CatalogCache::new(std::time::Duration::from_secs(5));
        let rendered = cache.put(Page("a"), b"{\"x\":1}".to_vec(), t(0));
        let tag = rendered.etag.to_str().unwrap().to_owned();
        let status = |value: Option<String>| {
            let mut request = TestRequest::get();
            if let Some(value) = value {
                request = request.insert_header((header::IF_NONE_MATCH, value));
            }
            rendered
                .respond(&request.to_http_request())
                .status()
                .as_u16()
        };
        assert_eq!(status(None), 200);
        assert_eq!(status(Some(tag.clone())), 304);
        assert_eq!(status(Some(format!("W/{tag}"))), 304);
        assert_eq!(status(Some(format!("\"other\", {tag}"))), 304);
        assert_eq!(status(Some("*".into())), 304);
        assert_eq!(status(Some("\"other\"".into())), 200);
    }
}
