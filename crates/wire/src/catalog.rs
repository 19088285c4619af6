//! Catalog pages as agents page through them: the query from what they send, and opaque
//! cursors (the same over REST and MCP).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sacp_app::{AppError, CatalogQuery, ProductList};

use crate::dto::ProductListDto;

/// Default page size.
pub const DEFAULT_LIMIT: u32 = 20;
/// Largest page size.
pub const MAX_LIMIT: u32 = 100;
/// Longest cursor accepted (the gateway's own are about a dozen characters).
const MAX_CURSOR_LEN: usize = 64;

fn encode_cursor(offset: u32) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

fn decode_cursor(cursor: &str) -> Result<u32, AppError> {
    Some(cursor)
        .filter(|c| c.len() <= MAX_CURSOR_LEN)
        .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .and_then(|text| text.strip_prefix("o:").and_then(|n| n.parse().ok()))
        .ok_or_else(|| {
            AppError::BadRequest(
                "cursor is not valid: pass the next_cursor of the previous page unchanged".into(),
            )
        })
}

/// A page size written as text (a query parameter): an integer from 1 to [`MAX_LIMIT`].
pub fn limit_from_text(text: &str) -> Result<u32, AppError> {
    text.trim()
        .parse::<u32>()
        .map_err(|_| limit_error(text))
        .and_then(|n| check_limit(Some(n)))
}

fn limit_error(given: impl std::fmt::Debug) -> AppError {
    AppError::BadRequest(format!(
        "limit must be an integer from 1 to {MAX_LIMIT}, got {given:?}"
    ))
}

fn check_limit(limit: Option<u32>) -> Result<u32, AppError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(limit_error(n)),
    }
}

/// The catalog query of what an agent sent: search words (blank = none), a category, a page
/// size and the previous page's cursor.
pub fn catalog_query(
    q: Option<String>,
    category: Option<String>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> Result<CatalogQuery, AppError> {
    Ok(CatalogQuery {
        q: q.map(|q| q.trim().to_owned()).filter(|q| !q.is_empty()),
        category: category.filter(|c| !c.trim().is_empty()),
        limit: check_limit(limit)?,
        offset: cursor.map(decode_cursor).transpose()?.unwrap_or(0),
    })
}

impl From<ProductList> for ProductListDto {
    fn from(page: ProductList) -> ProductListDto {
        ProductListDto {
            products: page.products.into_iter().map(Into::into).collect(),
            next_cursor: page.next_offset.map(encode_cursor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(40)).ok(), Some(40));
        assert!(decode_cursor("garbage!").is_err());
        assert!(decode_cursor(&URL_SAFE_NO_PAD.encode("x:1")).is_err());
    }

    #[test]
    fn limit_is_bounded() {
        assert_eq!(check_limit(None).ok(), Some(20));
        assert_eq!(limit_from_text(" 100 ").ok(), Some(100));
        for bad in ["0", "101", "-1", "ten", ""] {
            assert!(limit_from_text(bad).is_err(), "{bad}");
        }
        assert!(check_limit(Some(0)).is_err());
    }
}
