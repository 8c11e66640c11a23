//! Cursor pagination: `?limit=&cursor=`, answered with `{data, next_cursor}`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::error::ApiError;

const DEFAULT_LIMIT: u32 = 50;
/// Largest page of every list.
pub const MAX_LIMIT: u32 = 500;

/// Paging parameters of every list endpoint.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (an id, base64url-encoded).
    #[param(pattern = "^[A-Za-z0-9_-]{21}[AQgw]$")]
    pub cursor: Option<String>,
}

/// `limit`, or `default` when absent; 400 outside 1..=[`MAX_LIMIT`].
pub fn checked_limit(limit: Option<u32>, default: u32) -> Result<u32, ApiError> {
    match limit.unwrap_or(default) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(ApiError::bad_request(format!("limit must be 1 to {MAX_LIMIT}"))),
    }
}

impl PageQuery {
    /// The page size; 400 outside 1..=500.
    pub fn limit(&self) -> Result<u32, ApiError> {
        checked_limit(self.limit, DEFAULT_LIMIT)
    }

    /// The id after which this page starts.
    pub fn after(&self) -> Result<Option<Uuid>, ApiError> {
        let Some(cursor) = &self.cursor else { return Ok(None) };
        URL_SAFE_NO_PAD
            .decode(cursor)
            .ok()
            .and_then(|b| Uuid::from_slice(&b).ok())
            .map(Some)
            .ok_or_else(|| ApiError::bad_request("cursor is not one this API issued"))
    }
}

/// One page of a list.
#[derive(Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub data: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` rows (the extra row tells there is a next page).
    pub fn from_rows(mut rows: Vec<T>, limit: u32, id: impl Fn(&T) -> Uuid) -> Self {
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if more { rows.last().map(|r| URL_SAFE_NO_PAD.encode(id(r).as_bytes())) } else { None };
        Page { data: rows, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_marks_last_page() -> Result<(), ApiError> {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let page = Page::from_rows(ids.clone(), 2, |u| *u);
        assert_eq!(page.data.len(), 2);
        let q = PageQuery { limit: Some(2), cursor: page.next_cursor };
        assert_eq!(q.after()?, ids.get(1).copied());
        assert!(Page::from_rows(ids, 3, |u| *u).next_cursor.is_none());
        assert!(PageQuery { limit: None, cursor: Some("!!".into()) }.after().is_err());
        assert!(PageQuery { limit: Some(0), cursor: None }.limit().is_err());
        assert!(PageQuery { limit: Some(501), cursor: None }.limit().is_err());
        // Any string the documented pattern allows is a cursor.
        for last in ['A', 'Q', 'g', 'w'] {
            let cursor = format!("{}{last}", "_-".repeat(10) + "z");
            assert!(PageQuery { limit: None, cursor: Some(cursor) }.after().is_ok());
        }
        Ok(())
    }
}
