//! Browse, search and read products.

use sacp_domain::ProductId;
use sacp_domain::catalog::Product;
use sacp_ports::UpstreamError;
use sacp_ports::store::{ProductQuery, SearchQuery};

use super::{AppError, Gateway};

/// What an agent asks of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogQuery {
    /// Search words; `None` lists.
    pub q: Option<String>,
    /// Only this category (listing only).
    pub category: Option<String>,
    /// Page size, 1..=100.
    pub limit: u32,
    /// Products to skip (decoded from the agent's cursor).
    pub offset: u32,
}

/// One page of products.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductList {
    /// The products.
    pub products: Vec<Product>,
    /// Offset of the next page, if any.
    pub next_offset: Option<u32>,
}

/// Longest search text, in characters.
pub const MAX_QUERY_CHARS: usize = 200;
/// Longest category name, in characters.
pub const MAX_CATEGORY_CHARS: usize = 64;

/// Refuses a query part that is too long or holds control characters: it is the caller's
/// error (400), never something sent upstream.
fn check_text(name: &str, text: &str, max: usize) -> Result<(), AppError> {
    if text.chars().count() > max {
        return Err(AppError::BadRequest(format!(
            "{name} is limited to {max} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(AppError::BadRequest(format!(
            "{name} must not contain control characters"
        )));
    }
    Ok(())
}

impl Gateway {
    /// Lists or searches products.
    pub async fn list_products(&self, query: &CatalogQuery) -> Result<ProductList, AppError> {
        let q = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
        if let Some(q) = q {
            check_text("q", q, MAX_QUERY_CHARS)?;
        }
        if let Some(category) = &query.category {
            check_text("category", category, MAX_CATEGORY_CHARS)?;
        }
        let page = match q {
            Some(q) => {
                if query.category.is_some() {
                    return Err(AppError::BadRequest(
                        "use either q (search) or category (browse), not both".into(),
                    ));
                }
                self.store
                    .search_products(&SearchQuery {
                        q: q.to_owned(),
                        limit: query.limit,
                        offset: query.offset,
                    })
                    .await
            }
            None => {
                self.store
                    .list_products(&ProductQuery {
                        category: query.category.clone(),
                        limit: query.limit,
                        offset: query.offset,
                    })
                    .await
            }
        }
        .map_err(AppError::store)?;
        Ok(ProductList {
            products: page.products,
            next_offset: page.next_offset,
        })
    }

    /// One product.
    /// The store's merchant: who the person pays.
    pub async fn merchant(&self) -> Result<sacp_domain::catalog::Merchant, AppError> {
        self.store.merchant().await.map_err(AppError::store)
    }

    /// One product of the catalog.
    pub async fn get_product(&self, id: &str) -> Result<Product, AppError> {
        let id = ProductId::parse(id).map_err(|_| AppError::NotFound("product"))?;
        self.store.product(&id).await.map_err(|e| match e {
            UpstreamError::NotFound => AppError::NotFound("product"),
            other => AppError::store(other),
        })
    }
}
