//! `GET /products`, `GET /products/{id}`: answered from the catalog cache when it holds them,
//! always with an `ETag` (`If-None-Match` gets `304`).

use actix_web::{HttpRequest, HttpResponse, web};
use sacp_app::AppError;
use serde::Deserialize;
use utoipa::IntoParams;

use super::State;
use crate::catalog_cache::CatalogKey;
use crate::problem::ApiError;
use sacp_wire::dto::{ProblemDto, ProductDto, ProductListDto};

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
    let limit = query
        .limit
        .as_deref()
        .map(sacp_wire::catalog::limit_from_text)
        .transpose()?;
    let catalog_query =
        sacp_wire::catalog::catalog_query(query.q, query.category, limit, query.cursor.as_deref())?;
    let key = format!(
        "{}\n{}\n{}\n{}",
        catalog_query.q.as_deref().unwrap_or(""),
        catalog_query.category.as_deref().unwrap_or(""),
        catalog_query.limit,
        catalog_query.offset
    );
    cached(&state, CatalogKey::Page(&key), &request, async {
        let page = state.gateway.list_products(&catalog_query).await?;
        Ok(ProductListDto::from(page))
    })
    .await
}

/// Room reserved for a rendered catalog answer: a page of 20 products is about 9 KiB.
const RENDERED_CAPACITY: usize = 16 * 1024;

/// The catalog cache's answer for `key`, else `fetch`'s, rendered, kept and answered
/// (`304` when `If-None-Match` names it).
async fn cached<T: serde::Serialize>(
    state: &State,
    key: CatalogKey<'_>,
    request: &HttpRequest,
    fetch: impl Future<Output = Result<T, AppError>>,
) -> Result<HttpResponse, ApiError> {
    let now = state.gateway.now();
    if let Some(kept) = state.catalog_cache.get(key, now) {
        return Ok(kept.respond(request));
    }
    // Catalog DTOs hold strings and integers only, which always serialize. Sized for a
    // page of products up front, so that the body is not copied as it grows, then trimmed
    // (in place) before the cache keeps it.
    let mut body = Vec::with_capacity(RENDERED_CAPACITY);
    if serde_json::to_writer(&mut body, &fetch.await?).is_err() {
        body.clear();
    }
    body.shrink_to_fit();
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
pub async fn get_product(state: State, request: HttpRequest) -> Result<HttpResponse, ApiError> {
    // Borrowed as the router decoded it: a cached answer is found without a copy of the id.
    let id = request.match_info().get("id").unwrap_or_default();
    cached(&state, CatalogKey::Product(id), &request, async {
        Ok(ProductDto::from(state.gateway.get_product(id).await?))
    })
    .await
}
