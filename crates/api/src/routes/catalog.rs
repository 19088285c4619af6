//! `GET /products`, `GET /products/{id}`: answered from the catalog cache when it holds them,
//! always with an `ETag` (`If-None-Match` gets `304`).

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sacp_app::{AppError, CatalogQuery};
use serde::Deserialize;
use utoipa::IntoParams;

use super::State;
use crate::problem::ApiError;
use sacp_wire::dto::{ProblemDto, ProductDto, ProductListDto};

/// Default page size.
const DEFAULT_LIMIT: u32 = 20;
/// Largest page size.
const MAX_LIMIT: u32 = 100;

/// Query of `GET /products`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProductsQuery {
    /// Search words (needs the `search:read` scope), at most 200 characters. Not combined
    /// with `category`.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Only this category, e.g. `coffee`, `tea`, `equipment`; at most 64 characters.
    #[param(max_length = 64)]
    category: Option<String>,
    /// Page size, 1 to 100 (default 20).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    limit: Option<String>,
    /// `next_cursor` of the previous page.
    #[param(max_length = 64)]
    cursor: Option<String>,
}

fn encode_cursor(offset: u32) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

/// Longest cursor accepted (the gateway's own are about a dozen characters).
const MAX_CURSOR_LEN: usize = 64;

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

fn parse_limit(limit: Option<&str>) -> Result<u32, AppError> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                AppError::BadRequest(format!(
                    "limit must be an integer from 1 to {MAX_LIMIT}, got {text:?}"
                ))
            }),
    }
}

/// Browse or search the catalog.
#[utoipa::path(
    get, path = "/products", tag = "catalog", params(ProductsQuery),
    responses(
        (status = 200, description = "A page of products (with `ETag`)", body = ProductListDto),
        (status = 304, description = "Not modified: `If-None-Match` named the current `ETag`"),
        (status = 400, description = "Invalid limit or cursor, or q or category too long", body = ProblemDto, content_type = "application/problem+json"),
        (status = 502, description = "Store unavailable", body = ProblemDto, content_type = "application/problem+json"),
        (status = 504, description = "Store timeout", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn list_products(
    state: State,
    query: web::Query<ProductsQuery>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = query.into_inner();
    let catalog_query = CatalogQuery {
        q: query
            .q
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty()),
        category: query.category.filter(|c| !c.trim().is_empty()),
        limit: parse_limit(query.limit.as_deref())?,
        offset: query
            .cursor
            .as_deref()
            .map(decode_cursor)
            .transpose()?
            .unwrap_or(0),
    };
    let key = format!(
        "list\n{}\n{}\n{}\n{}",
        catalog_query.q.as_deref().unwrap_or(""),
        catalog_query.category.as_deref().unwrap_or(""),
        catalog_query.limit,
        catalog_query.offset
    );
    cached(&state, key, &request, async {
        let page = state.gateway.list_products(&catalog_query).await?;
        Ok(ProductListDto {
            products: page.products.into_iter().map(Into::into).collect(),
            next_cursor: page.next_offset.map(encode_cursor),
        })
    })
    .await
}

/// The catalog cache's answer for `key`, else `fetch`'s, rendered, kept and answered
/// (`304` when `If-None-Match` names it).
async fn cached<T: serde::Serialize>(
    state: &State,
    key: String,
    request: &HttpRequest,
    fetch: impl Future<Output = Result<T, AppError>>,
) -> Result<HttpResponse, ApiError> {
    let now = state.gateway.now();
    if let Some(kept) = state.catalog_cache.get(&key, now) {
        return Ok(kept.respond(request));
    }
    // Catalog DTOs hold strings and integers only, which always serialize.
    let body = serde_json::to_vec(&fetch.await?).unwrap_or_default();
    Ok(state.catalog_cache.put(key, body, now).respond(request))
}

/// One product.
#[utoipa::path(
    get, path = "/products/{id}", tag = "catalog",
    params(("id" = String, Path, description = "Product id")),
    responses(
        (status = 200, description = "The product (with `ETag`)", body = ProductDto),
        (status = 304, description = "Not modified: `If-None-Match` named the current `ETag`"),
        (status = 404, description = "No such product", body = ProblemDto, content_type = "application/problem+json"),
        (status = 502, description = "Store unavailable", body = ProblemDto, content_type = "application/problem+json"),
    )
)]
pub async fn get_product(
    state: State,
    id: web::Path<String>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    cached(&state, format!("product\n{id}"), &request, async {
        Ok(ProductDto::from(state.gateway.get_product(&id).await?))
    })
    .await
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
        assert_eq!(parse_limit(None).ok(), Some(20));
        assert_eq!(parse_limit(Some("100")).ok(), Some(100));
        assert!(parse_limit(Some("0")).is_err());
        assert!(parse_limit(Some("101")).is_err());
        assert!(parse_limit(Some("ten")).is_err());
    }
}
