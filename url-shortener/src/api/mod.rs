//! The HTTP API: routing, request bodies, and the state every handler shares.
//!
//! ```text
//!  GET|HEAD /{code}                     redirect.rs   302 (or 301) to the link's URL; 404, 410
//!  POST     /api/v1/links               links.rs      create: 201, 400, 401, 409
//!  GET      /api/v1/links?cursor=&limit= links.rs     one page, in code order
//!  GET      /api/v1/links/{code}        links.rs      metadata and click count
//!  PATCH    /api/v1/links/{code}        links.rs      change target, expiry, redirect status
//!  DELETE   /api/v1/links/{code}        links.rs      204
//!  GET      /api/v1/openapi.json        openapi.rs    the OpenAPI 3.0 document of all this
//! ```
//!
//! One request's path through [`App::handle`]: [`resolve`] picks the [`Route`] from the method
//! and path alone, the route's handler runs and returns `Result<Response, ApiError>`, and the
//! error side becomes a JSON response in one place (`ApiError::into_response`). Every answer
//! is counted by route and status class.

pub mod auth;
pub mod error;
mod links;
mod openapi;
mod redirect;

use std::sync::Arc;
use std::time::{Duration, Instant};

use http1::{Method, Request, Response, StatusCode, header};
use serde::de::DeserializeOwned;
use service_kit::metrics::{
    Histogram, IntCounter, LATENCY_SECONDS_BUCKETS, MetricsError, Registry,
};

use crate::cache::{CacheLimits, LinkCache, Lookup};
use crate::clicks::ClickRecorder;
use crate::clock::Clock;
use crate::id::{CODE_SPACE, Feistel, IdAllocator};
use crate::store::{Link, Store, StoreError};
use auth::ApiKeys;
use error::ApiError;

pub use links::MAX_PAGE_LIMIT;

/// What a request asks for, decided from its method and path alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Route {
    // The order is that of `Route::ALL`: `r as usize` indexes per-route metrics.
    Redirect,
    CreateLink,
    ListLinks,
    GetLink,
    UpdateLink,
    DeleteLink,
    OpenApi,
}

impl Route {
    pub const ALL: [Route; 7] = [
        Route::Redirect,
        Route::CreateLink,
        Route::ListLinks,
        Route::GetLink,
        Route::UpdateLink,
        Route::DeleteLink,
        Route::OpenApi,
    ];

    /// The `operationId` of the route in the OpenAPI document, and its metrics label.
    pub fn operation_id(self) -> &'static str {
        match self {
            Route::Redirect => "redirect",
            Route::CreateLink => "createLink",
            Route::ListLinks => "listLinks",
            Route::GetLink => "getLink",
            Route::UpdateLink => "updateLink",
            Route::DeleteLink => "deleteLink",
            Route::OpenApi => "openApi",
        }
    }

    /// Whether the route changes links, and so needs an API key when keys are configured.
    pub fn writes(self) -> bool {
        matches!(
            self,
            Route::CreateLink | Route::UpdateLink | Route::DeleteLink
        )
    }
}

/// The outcome of routing.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved<'a> {
    /// A route, with the `{code}` of its path if it has one.
    Route(Route, Option<&'a str>),
    /// The path exists but not for this method; the `Allow` value.
    MethodNotAllowed(&'static str),
    /// Nothing here.
    NotFound,
}

const LINKS: &str = "/api/v1/links";

/// Picks the route for `method` and `path`.
pub fn resolve<'a>(method: &Method, path: &'a str) -> Resolved<'a> {
    let is_get = *method == Method::GET || *method == Method::HEAD;
    if path == LINKS {
        return match *method {
            Method::POST => Resolved::Route(Route::CreateLink, None),
            _ if is_get => Resolved::Route(Route::ListLinks, None),
            _ => Resolved::MethodNotAllowed("GET, HEAD, POST"),
        };
    }
    if let Some(code) = path.strip_prefix(LINKS).and_then(|p| p.strip_prefix('/')) {
        if code.is_empty() || code.contains('/') {
            return Resolved::NotFound;
        }
        let route = match *method {
            Method::PATCH => Route::UpdateLink,
            Method::DELETE => Route::DeleteLink,
            _ if is_get => Route::GetLink,
            _ => return Resolved::MethodNotAllowed("GET, HEAD, PATCH, DELETE"),
        };
        return Resolved::Route(route, Some(code));
    }
    if path == "/api/v1/openapi.json" {
        return match is_get {
            true => Resolved::Route(Route::OpenApi, None),
            false => Resolved::MethodNotAllowed("GET, HEAD"),
        };
    }
    let Some(code) = path.strip_prefix('/') else {
        return Resolved::NotFound;
    };
    if code.is_empty() || code.contains('/') {
        return Resolved::NotFound;
    }
    match is_get {
        true => Resolved::Route(Route::Redirect, Some(code)),
        false => Resolved::MethodNotAllowed("GET, HEAD"),
    }
}

/// Settings the handlers read, taken from the config at start-up.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Prefix of short URLs, without a trailing `/`.
    pub public_url: String,
    pub max_body_bytes: u64,
    pub permanent_redirect_max_age_seconds: u64,
    /// Lower-case hosts links may not point to.
    pub url_blocklist: Vec<String>,
    pub api_keys: ApiKeys,
    pub id_block_size: u64,
    pub cache: CacheLimits,
}

/// Label of requests that matched no route.
const NO_ROUTE: &str = "none";

/// Status classes, the `status` label.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The per-request series, looked up once at start-up: `with_label_values` hashes the labels
/// and takes a lock, which the redirect path should not pay on every request.
struct Metrics {
    /// `[route index][status class]`; the last route index is [`NO_ROUTE`].
    requests: Vec<[IntCounter; 5]>,
    latency: Vec<Histogram>,
    links_created: IntCounter,
    redirects: IntCounter,
}

impl Metrics {
    fn register(registry: &Registry) -> Result<Metrics, MetricsError> {
        let requests = registry.counter_vec(
            "url_shortener_requests_total",
            "Requests answered, by route (OpenAPI operationId) and status class.",
            &["route", "status"],
        )?;
        let latency = registry.histogram_vec(
            "url_shortener_request_duration_seconds",
            "Time from routing a request to its response head, by route.",
            &["route"],
            LATENCY_SECONDS_BUCKETS,
        )?;
        let labels = Route::ALL
            .iter()
            .map(|r| r.operation_id())
            .chain([NO_ROUTE]);
        Ok(Metrics {
            requests: labels
                .clone()
                .map(|route| CLASSES.map(|class| requests.with_label_values(&[route, class])))
                .collect(),
            latency: labels
                .map(|route| latency.with_label_values(&[route]))
                .collect(),
            links_created: registry
                .counter("url_shortener_links_created_total", "Links created.")?,
            redirects: registry.counter(
                "url_shortener_redirects_total",
                "Redirects answered (301 and 302).",
            )?,
        })
    }

    fn observe(&self, route: Option<Route>, status: StatusCode, elapsed: Duration) {
        let index = route.map_or(Route::ALL.len(), |r| r as usize);
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.requests[index][class].inc();
        self.latency[index].observe(elapsed.as_secs_f64());
    }
}

/// Why the API could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

/// The state every handler shares.
pub struct App<S> {
    store: Arc<S>,
    clock: Arc<dyn Clock>,
    ids: IdAllocator,
    feistel: Feistel,
    settings: Settings,
    metrics: Metrics,
    cache: LinkCache,
    clicks: ClickRecorder,
}

impl<S: Store> App<S> {
    /// The API over `store`, counting clicks into `clicks`; reads (or makes) the id key,
    /// registers the metrics.
    pub async fn new(
        store: Arc<S>,
        clock: Arc<dyn Clock>,
        settings: Settings,
        clicks: ClickRecorder,
        registry: &Registry,
    ) -> Result<App<S>, StartError> {
        let key = store.id_key().await?;
        Ok(App {
            cache: LinkCache::new(settings.cache, registry)?,
            clicks,
            ids: IdAllocator::new(settings.id_block_size),
            feistel: Feistel::new(key, CODE_SPACE),
            metrics: Metrics::register(registry)?,
            store,
            clock,
            settings,
        })
    }

    /// Answers one request.
    pub async fn handle(&self, request: Request) -> Response {
        let started = Instant::now();
        let path = request.head.path().to_owned();
        let (route, result) = match resolve(&request.head.method, &path) {
            Resolved::Route(route, code) => {
                (Some(route), self.dispatch(route, code, request).await)
            }
            Resolved::MethodNotAllowed(allow) => {
                (None, Ok(method_not_allowed(&request.head.method, allow)))
            }
            Resolved::NotFound => (None, Err(no_route(&path))),
        };
        let response = result.unwrap_or_else(ApiError::into_response);
        self.metrics
            .observe(route, response.status(), started.elapsed());
        response
    }

    async fn dispatch(
        &self,
        route: Route,
        code: Option<&str>,
        request: Request,
    ) -> Result<Response, ApiError> {
        if route.writes() && !self.settings.api_keys.allows(&request.head.headers) {
            return Err(unauthorized());
        }
        let code = code.unwrap_or_default();
        match route {
            Route::Redirect => self.redirect(code, &request.head).await,
            Route::CreateLink => self.create_link(request).await,
            Route::ListLinks => self.list_links(request.head.query()).await,
            Route::GetLink => self.get_link(code).await,
            Route::UpdateLink => self.update_link(code, request).await,
            Route::DeleteLink => self.delete_link(code).await,
            Route::OpenApi => Ok(openapi::response()),
        }
    }

    /// The link with this code, through the cache (cache-aside: a miss reads the store and
    /// fills the cache, an unknown code included).
    async fn lookup(&self, code: &str) -> Result<Option<Arc<Link>>, StoreError> {
        let now = Instant::now();
        match self.cache.get(code, now) {
            Lookup::Found(link) => return Ok(Some(link)),
            Lookup::Absent => return Ok(None),
            Lookup::Miss => {}
        }
        let ticket = self.cache.ticket(code);
        let link = self.store.get(code).await?.map(Arc::new);
        self.cache.put(code, link.clone(), ticket, now);
        Ok(link)
    }

    /// The request body as JSON of type `T`.
    async fn read_json<T: DeserializeOwned>(&self, request: Request) -> Result<T, ApiError> {
        if let Some(kind) = request.head.headers.get(header::CONTENT_TYPE) {
            let kind = kind.to_str().unwrap_or_default().to_ascii_lowercase();
            // `curl -d` labels every body form-urlencoded; it is parsed as JSON all the same.
            let json = kind.starts_with("application/json") || kind.contains("+json");
            if !json && !kind.starts_with("application/x-www-form-urlencoded") {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "send the body as JSON with `Content-Type: application/json`",
                ));
            }
        }
        let max = self.settings.max_body_bytes;
        let body = request.body.collect(max).await.map_err(|err| match err {
            http1::Error::Body(http1::BodyError::TooLarge { .. }) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("the request body is over the limit of {max} bytes"),
            ),
            other => ApiError::bad_request(
                "unreadable_body",
                format!("the request body could not be read: {other}"),
            ),
        })?;
        if body.data.is_empty() {
            return Err(ApiError::bad_request(
                "invalid_json",
                "the request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&body.data).map_err(|err| {
            ApiError::bad_request(
                "invalid_json",
                format!("the request body is not the JSON expected: {err}"),
            )
        })
    }
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "this endpoint needs an API key: send `Authorization: Bearer KEY` or `X-Api-Key: KEY`",
    )
}

fn method_not_allowed(method: &Method, allow: &'static str) -> Response {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed here; use one of {allow}"),
    )
    .into_response()
    .with_header(header::ALLOW, http1::HeaderValue::from_static(allow))
}

fn no_route(path: &str) -> ApiError {
    let message = if path.starts_with("/api/") {
        format!("no API endpoint at `{path}`; the API is described at /api/v1/openapi.json")
    } else {
        format!("nothing at `{path}`; short links look like /{{code}}")
    };
    ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
}

/// Whether `text` could be a code (generated or alias): `[A-Za-z0-9_-]`, at most 64 long.
fn is_code_shaped(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= crate::alias::MAX_ALIAS_LEN
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_discriminants_index_route_all() {
        for (i, route) in Route::ALL.iter().enumerate() {
            assert_eq!(*route as usize, i);
        }
    }

    #[test]
    fn routes_are_chosen_by_method_and_path() {
        let r = |m: Method, p: &'static str| resolve(&m, p);
        assert_eq!(
            r(Method::GET, "/abc1234"),
            Resolved::Route(Route::Redirect, Some("abc1234"))
        );
        assert_eq!(
            r(Method::HEAD, "/abc1234"),
            Resolved::Route(Route::Redirect, Some("abc1234"))
        );
        assert_eq!(
            r(Method::POST, "/abc1234"),
            Resolved::MethodNotAllowed("GET, HEAD")
        );
        assert_eq!(
            r(Method::POST, LINKS),
            Resolved::Route(Route::CreateLink, None)
        );
        assert_eq!(
            r(Method::GET, LINKS),
            Resolved::Route(Route::ListLinks, None)
        );
        assert_eq!(
            r(Method::PUT, LINKS),
            Resolved::MethodNotAllowed("GET, HEAD, POST")
        );
        assert_eq!(
            r(Method::PATCH, "/api/v1/links/x"),
            Resolved::Route(Route::UpdateLink, Some("x"))
        );
        assert_eq!(
            r(Method::DELETE, "/api/v1/links/x"),
            Resolved::Route(Route::DeleteLink, Some("x"))
        );
        assert_eq!(
            r(Method::GET, "/api/v1/links/x"),
            Resolved::Route(Route::GetLink, Some("x"))
        );
        assert_eq!(r(Method::GET, "/api/v1/links/x/y"), Resolved::NotFound);
        assert_eq!(r(Method::GET, "/api/v1/links/"), Resolved::NotFound);
        assert_eq!(r(Method::GET, "/"), Resolved::NotFound);
        assert_eq!(r(Method::GET, "/a/b"), Resolved::NotFound);
        assert_eq!(r(Method::GET, "/api/v2/links"), Resolved::NotFound);
        assert_eq!(
            r(Method::GET, "/api"),
            Resolved::Route(Route::Redirect, Some("api"))
        );
    }
}
