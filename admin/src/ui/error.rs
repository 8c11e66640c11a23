//! The one error type of the portal's and the admin UI's page handlers, rendered by each
//! face as its own error page (or a redirect).

use std::marker::PhantomData;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::ApiError;

/// A server-rendered face: how it shows an error page, and its name in logs.
pub trait Face: 'static {
    const NAME: &'static str;
    fn error_page(status: StatusCode, message: String) -> Response;
}

/// A handler's failure on face `F`.
#[derive(Debug)]
pub enum UiError<F: Face> {
    NotFound,
    Forbidden(&'static str),
    TooMany(u64),
    Conflict(String),
    Redirect(String),
    Internal(String),
    #[doc(hidden)]
    Face(PhantomData<F>, std::convert::Infallible),
}

impl<F: Face> UiError<F> {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::Internal(e.to_string())
    }
}

impl<F: Face> From<sqlx::Error> for UiError<F> {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl<F: Face> From<anyhow::Error> for UiError<F> {
    fn from(e: anyhow::Error) -> Self {
        Self::Internal(format!("{e:#}"))
    }
}

impl<F: Face> From<ApiError> for UiError<F> {
    fn from(e: ApiError) -> Self {
        match e.status() {
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::FORBIDDEN => Self::Forbidden("You may not do this."),
            StatusCode::CONFLICT | StatusCode::PRECONDITION_FAILED | StatusCode::UNPROCESSABLE_ENTITY => {
                Self::Conflict(e.detail().to_owned())
            }
            _ => Self::Internal(e.to_string()),
        }
    }
}

impl<F: Face> IntoResponse for UiError<F> {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            UiError::Redirect(to) => return Redirect::to(&to).into_response(),
            UiError::NotFound => (StatusCode::NOT_FOUND, "There is nothing here.".to_owned()),
            UiError::Forbidden(m) => (StatusCode::FORBIDDEN, m.to_owned()),
            UiError::TooMany(secs) => (
                StatusCode::TOO_MANY_REQUESTS,
                format!("Too many attempts. Try again in {} minutes.", secs.div_ceil(60).max(1)),
            ),
            UiError::Conflict(m) => (StatusCode::CONFLICT, m),
            UiError::Internal(m) => {
                tracing::error!(error = %m, face = F::NAME, "page request failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong on our side. Please try again.".to_owned())
            }
            UiError::Face(_, never) => match never {},
        };
        F::error_page(status, message)
    }
}
