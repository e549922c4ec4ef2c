//! The link resource: create, read, update, delete, list.
//!
//! A link in JSON, as every endpoint here returns it:
//!
//! ```json
//! {"code": "x7Kq9Zb", "short_url": "https://sho.rt/x7Kq9Zb", "url": "https://example.com/",
//!  "created_at": "2026-11-22T08:00:00Z", "expires_at": null, "redirect": 302,
//!  "expired": false, "clicks": 12}
//! ```
//!
//! `clicks` is absent from the answer to a create (it is 0) and otherwise trails the true count
//! by at most the click flush interval.

use http1::{HeaderValue, Request, Response, StatusCode, header};
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};

use super::error::{ApiError, json_response};
use super::{App, is_code_shaped};
use crate::id;
use crate::store::{Link, Store};
use crate::{alias, target, timestamp};

/// Links per page when `limit` is not given.
pub const DEFAULT_PAGE_LIMIT: usize = 50;

/// Largest `limit` of one page.
pub const MAX_PAGE_LIMIT: usize = 1000;

/// Longest accepted `ttl_seconds`: 100 years.
pub const MAX_TTL_SECONDS: u64 = 100 * 365 * 24 * 3600;

/// Generated codes tried for one create before giving up. A generated code is taken only if
/// somebody chose it as an alias, so a second try practically always succeeds.
const MAX_CODE_ATTEMPTS: usize = 16;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateLink {
    url: String,
    alias: Option<String>,
    ttl_seconds: Option<u64>,
    expires_at: Option<String>,
    redirect: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateLink {
    url: Option<String>,
    ttl_seconds: Option<u64>,
    /// Absent: unchanged. `null`: the link no longer expires. A time: the new expiry.
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Option<String>>,
    redirect: Option<u16>,
}

/// Tells a field given as `null` (`Some(None)`) from an absent one (`None`, by `default`).
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl<S: Store> App<S> {
    pub(super) async fn create_link(&self, request: Request) -> Result<Response, ApiError> {
        let body: CreateLink = self.read_json(request).await?;
        let now = self.clock.now_ms();
        let url = self.check_url(&body.url)?;
        if body.ttl_seconds.is_some() && body.expires_at.is_some() {
            return Err(both_expiries());
        }
        let mut link = Link {
            code: String::new(),
            url,
            created_at_ms: now,
            expires_at_ms: expiry(now, body.ttl_seconds, body.expires_at.as_deref())?,
            permanent: permanent(body.redirect)?,
        };
        match body.alias {
            Some(alias) => {
                alias::check(&alias)?;
                link.code = alias;
                if !self.store.create(&link).await? {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        "alias_taken",
                        format!("alias `{}` is already taken; choose another", link.code),
                    ));
                }
            }
            None => self.create_with_generated_code(&mut link).await?,
        }
        // A negative entry may exist if the code was probed before it was created.
        self.cache.invalidate(&link.code);
        self.metrics.links_created.inc();
        let location = format!("/api/v1/links/{}", link.code);
        let response = json_response(StatusCode::CREATED, &self.view(&link, None, now));
        Ok(match HeaderValue::from_str(&location) {
            Ok(value) => response.with_header(header::LOCATION, value),
            Err(_) => response,
        })
    }

    async fn create_with_generated_code(&self, link: &mut Link) -> Result<(), ApiError> {
        for _ in 0..MAX_CODE_ATTEMPTS {
            let next = self.ids.next(|n| self.store.lease_ids(n)).await?;
            let Some(code) = id::code_for(&self.feistel, next) else {
                return Err(ApiError::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "code_space_exhausted",
                    "every 7-character code has been handed out; only custom aliases can be created",
                ));
            };
            link.code = code;
            if self.store.create(link).await? {
                return Ok(());
            }
            tracing::debug!(code = %link.code, "generated code already taken by an alias");
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no_free_code",
            "no free code was found; retry the request",
        ))
    }

    pub(super) async fn get_link(&self, code: &str) -> Result<Response, ApiError> {
        let link = self.find(code).await?;
        let clicks = self.store.clicks(code).await?;
        let view = self.view(&link, Some(clicks), self.clock.now_ms());
        Ok(json_response(StatusCode::OK, &view))
    }

    pub(super) async fn update_link(
        &self,
        code: &str,
        request: Request,
    ) -> Result<Response, ApiError> {
        let body: UpdateLink = self.read_json(request).await?;
        if body.url.is_none()
            && body.ttl_seconds.is_none()
            && body.expires_at.is_none()
            && body.redirect.is_none()
        {
            return Err(ApiError::bad_request(
                "empty_update",
                "give at least one of url, ttl_seconds, expires_at, redirect",
            ));
        }
        if body.ttl_seconds.is_some() && body.expires_at.is_some() {
            return Err(both_expiries());
        }
        let mut link = self.find(code).await?;
        let now = self.clock.now_ms();
        if let Some(url) = &body.url {
            link.url = self.check_url(url)?;
        }
        match (body.ttl_seconds, body.expires_at) {
            (Some(ttl), _) => link.expires_at_ms = expiry(now, Some(ttl), None)?,
            (None, Some(Some(at))) => link.expires_at_ms = expiry(now, None, Some(&at))?,
            (None, Some(None)) => link.expires_at_ms = None,
            (None, None) => {}
        }
        if body.redirect.is_some() {
            link.permanent = permanent(body.redirect)?;
        }
        let replaced = self.store.replace(&link).await;
        // Even after a store error: the write may have landed before the failure.
        self.cache.invalidate(code);
        if !replaced? {
            return Err(ApiError::not_found(code));
        }
        let clicks = self.store.clicks(code).await?;
        Ok(json_response(
            StatusCode::OK,
            &self.view(&link, Some(clicks), now),
        ))
    }

    pub(super) async fn delete_link(&self, code: &str) -> Result<Response, ApiError> {
        if !is_code_shaped(code) {
            return Err(ApiError::not_found(code));
        }
        let deleted = self.store.delete(code).await;
        self.cache.invalidate(code);
        if !deleted? {
            return Err(ApiError::not_found(code));
        }
        Ok(Response::new(StatusCode::NO_CONTENT, http1::Body::empty()))
    }

    pub(super) async fn list_links(&self, query: Option<&str>) -> Result<Response, ApiError> {
        let (cursor, limit) = page_params(query.unwrap_or_default())?;
        let links = self.store.list(cursor.as_deref(), limit).await?;
        let now = self.clock.now_ms();
        let codes: Vec<&str> = links.iter().map(|link| link.code.as_str()).collect();
        let clicks = self.store.clicks_of(&codes).await?;
        let views: Vec<_> = links
            .iter()
            .zip(clicks)
            .map(|(link, clicks)| self.view(link, Some(clicks), now))
            .collect();
        let next_cursor = match links.last() {
            Some(last) if links.len() == limit => Value::from(last.code.clone()),
            _ => Value::Null,
        };
        let page = json!({ "links": views, "next_cursor": next_cursor });
        Ok(json_response(StatusCode::OK, &page))
    }

    /// The stored link with this code, expired or not; 404 if there is none.
    async fn find(&self, code: &str) -> Result<Link, ApiError> {
        if !is_code_shaped(code) {
            return Err(ApiError::not_found(code));
        }
        self.store
            .get(code)
            .await?
            .ok_or_else(|| ApiError::not_found(code))
    }

    /// The URL to store for `url`, or why it is refused.
    fn check_url(&self, url: &str) -> Result<String, ApiError> {
        let url = target::normalize(url.trim());
        target::check(&url, &self.settings.url_blocklist)?;
        Ok(url)
    }

    fn view(&self, link: &Link, clicks: Option<u64>, now_ms: u64) -> Value {
        let mut view = json!({
            "code": link.code,
            "short_url": format!("{}/{}", self.settings.public_url, link.code),
            "url": link.url,
            "created_at": timestamp::format(link.created_at_ms),
            "expires_at": link.expires_at_ms.map(timestamp::format),
            "redirect": if link.permanent { 301 } else { 302 },
            "expired": link.is_expired(now_ms),
        });
        if let Some(clicks) = clicks {
            view["clicks"] = Value::from(clicks);
        }
        view
    }
}

fn both_expiries() -> ApiError {
    ApiError::bad_request(
        "conflicting_expiry",
        "give either ttl_seconds or expires_at, not both",
    )
}

/// The expiry, Unix milliseconds, from a TTL or an RFC 3339 time (at most one is given).
fn expiry(
    now_ms: u64,
    ttl_seconds: Option<u64>,
    expires_at: Option<&str>,
) -> Result<Option<u64>, ApiError> {
    if let Some(ttl) = ttl_seconds {
        if !(1..=MAX_TTL_SECONDS).contains(&ttl) {
            return Err(ApiError::bad_request(
                "invalid_ttl",
                format!("ttl_seconds must be between 1 and {MAX_TTL_SECONDS} (100 years)"),
            ));
        }
        return Ok(Some(now_ms + ttl * 1000));
    }
    let Some(text) = expires_at else {
        return Ok(None);
    };
    let Some(at) = timestamp::parse(text) else {
        return Err(ApiError::bad_request(
            "invalid_expires_at",
            format!("expires_at `{text}` is not an RFC 3339 time such as 2030-01-01T00:00:00Z"),
        ));
    };
    if at <= now_ms {
        return Err(ApiError::bad_request(
            "invalid_expires_at",
            format!(
                "expires_at {text} is not in the future; the server's time is {}",
                timestamp::format(now_ms)
            ),
        ));
    }
    Ok(Some(at))
}

/// Whether the requested redirect status is 301; 302 when none is given.
fn permanent(redirect: Option<u16>) -> Result<bool, ApiError> {
    match redirect {
        None | Some(302) => Ok(false),
        Some(301) => Ok(true),
        Some(other) => Err(ApiError::bad_request(
            "invalid_redirect",
            format!("redirect must be 301 or 302, not {other}"),
        )),
    }
}

/// `cursor` and `limit` from a query string.
fn page_params(query: &str) -> Result<(Option<String>, usize), ApiError> {
    let (mut cursor, mut limit) = (None, DEFAULT_PAGE_LIMIT);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "cursor" if value.is_empty() => {}
            "cursor" if is_code_shaped(value) => cursor = Some(value.to_owned()),
            "cursor" => {
                return Err(ApiError::bad_request(
                    "invalid_cursor",
                    "cursor must be the next_cursor of the previous page",
                ));
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_PAGE_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::bad_request(
                            "invalid_limit",
                            format!("limit must be a whole number from 1 to {MAX_PAGE_LIMIT}"),
                        )
                    })?;
            }
            _ => {}
        }
    }
    Ok((cursor, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_parameters_have_defaults_and_bounds() {
        assert_eq!(page_params("").unwrap(), (None, DEFAULT_PAGE_LIMIT));
        assert_eq!(
            page_params("cursor=abc&limit=3").unwrap(),
            (Some("abc".into()), 3)
        );
        assert_eq!(page_params("limit=1000&other=x").unwrap(), (None, 1000));
        for bad in ["limit=0", "limit=1001", "limit=x", "limit=", "cursor=a/b"] {
            assert!(page_params(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn expiry_comes_from_a_ttl_or_a_future_time() {
        assert_eq!(expiry(1_000, Some(60), None).unwrap(), Some(61_000));
        assert_eq!(expiry(1_000, None, None).unwrap(), None);
        assert_eq!(
            expiry(0, None, Some("1970-01-01T00:00:02Z")).unwrap(),
            Some(2_000)
        );
        assert_eq!(expiry(0, Some(0), None).unwrap_err().error, "invalid_ttl");
        assert_eq!(
            expiry(0, Some(MAX_TTL_SECONDS + 1), None)
                .unwrap_err()
                .error,
            "invalid_ttl"
        );
        assert_eq!(
            expiry(5_000, None, Some("1970-01-01T00:00:02Z"))
                .unwrap_err()
                .error,
            "invalid_expires_at"
        );
        assert_eq!(
            expiry(0, None, Some("tomorrow")).unwrap_err().error,
            "invalid_expires_at"
        );
    }

    #[test]
    fn only_301_and_302_are_redirect_statuses() {
        assert!(!permanent(None).unwrap());
        assert!(permanent(Some(301)).unwrap());
        assert_eq!(permanent(Some(307)).unwrap_err().error, "invalid_redirect");
    }
}
