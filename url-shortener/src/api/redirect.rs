//! `GET /{code}`: the redirect, the one endpoint on the hot path.
//!
//! # 301 or 302, and what caches may keep
//!
//! | answer | when | `Cache-Control` | why |
//! |---|---|---|---|
//! | 302 Found | by default | `no-store` | every click reaches the server: it is counted, and a changed or deleted link takes effect at once |
//! | 301 Moved Permanently | the link asked for it | `private, max-age=N` | browsers skip the server on repeat visits (faster, uncounted); N is at most `permanent_redirect_max_age_seconds` and never past the link's expiry |
//! | 404 Not Found | unknown code | `no-store` | the code may be created a second later |
//! | 410 Gone | expired link | `no-store` | the owner may extend it |
//!
//! A 301 without `Cache-Control` may be cached by a browser for ever (RFC 9111 heuristic
//! freshness): that is why every 301 carries an explicit `max-age`, and why an unknown code is
//! never answered with a redirect of any kind. bit.ly answers 301 with a short private max-age
//! for the same reasons.
//!
//! # The hot path
//!
//! The link comes through the cache (`crate::cache`), the click goes on a bounded queue
//! (`crate::clicks`) with `try_send`: a cache hit touches neither the store nor any lock but
//! its cache shard's. HEAD answers the same but is not counted as a click.

use http1::{HeaderValue, Method, RequestHead, Response, StatusCode, header};

use super::error::ApiError;
use super::{App, is_code_shaped};
use crate::clicks::ClickEvent;
use crate::store::Store;
use crate::timestamp;

impl<S: Store> App<S> {
    pub(super) async fn redirect(
        &self,
        code: &str,
        head: &RequestHead,
    ) -> Result<Response, ApiError> {
        if !is_code_shaped(code) {
            return Err(ApiError::not_found(code));
        }
        let Some(link) = self.lookup(code).await? else {
            return Err(ApiError::not_found(code));
        };
        let now = self.clock.now_ms();
        if let Some(at) = link.expires_at_ms.filter(|&at| at <= now) {
            return Err(ApiError::gone(code, &timestamp::format(at)));
        }
        let location = HeaderValue::from_str(&link.url).map_err(|_| {
            tracing::error!(code, "stored URL is not a valid Location value");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "bad_stored_url",
                "this link's URL cannot be sent; recreate the link",
            )
        })?;
        self.metrics.redirects.inc();
        if head.method == Method::GET {
            self.clicks
                .record(ClickEvent::new(code, now, &head.headers));
        }
        let (status, cache_control) = if link.permanent {
            let remaining = link.expires_at_ms.map_or(u64::MAX, |at| (at - now) / 1000);
            let max_age = remaining.min(self.settings.permanent_redirect_max_age_seconds);
            (
                StatusCode::MOVED_PERMANENTLY,
                format!("private, max-age={max_age}"),
            )
        } else {
            (StatusCode::FOUND, "no-store".to_owned())
        };
        Ok(Response::new(status, http1::Body::empty())
            .with_header(header::LOCATION, location)
            .with_header(
                header::CACHE_CONTROL,
                HeaderValue::from_str(&cache_control).expect("ASCII digits and words"),
            ))
    }
}
