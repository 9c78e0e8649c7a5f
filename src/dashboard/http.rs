//! The dashboard's HTTP side (axum): the page, its event stream and `/metrics`, each behind
//! the token. Read-only: every route is a GET that changes nothing.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::{metrics, token, Shared};

/// The page: HTML with its CSS and JS inlined at build time, so one request brings all of it.
const PAGE: &str = concat!(
    include_str!("assets/head.html"),
    "<style>\n",
    include_str!("assets/app.css"),
    "</style>\n",
    include_str!("assets/body.html"),
    "<script>\n",
    include_str!("assets/app.js"),
    "</script>\n</body>\n</html>\n"
);

/// Nothing the page loads may come from anywhere but this server (or be inline).
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; \
                   frame-ancestors 'none'";

#[derive(Deserialize)]
pub struct TokenQuery {
    token: Option<String>,
}

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/events", get(events))
        .route("/metrics", get(metrics_text))
        .with_state(shared)
}

/// The token from `?token=` or `Authorization: Bearer`.
fn given<'a>(q: &'a TokenQuery, headers: &'a HeaderMap) -> Option<&'a str> {
    q.token.as_deref().or_else(|| {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
    })
}

/// The page and its event stream open with the dashboard's token only (never the metrics one).
fn dashboard_token(s: &Shared, q: &TokenQuery, headers: &HeaderMap) -> bool {
    given(q, headers).is_some_and(|t| token::matches(t, &s.token))
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "401: this dashboard needs its token: open the URL that `rdask-jobqueue status` prints \
         (it ends in ?token=...)\n",
    )
        .into_response()
}

fn secured(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

async fn page(
    State(s): State<Arc<Shared>>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if !dashboard_token(&s, &q, &headers) {
        return unauthorized();
    }
    secured(([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response())
}

async fn metrics_text(
    State(s): State<Arc<Shared>>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if !token::metrics_allowed(given(&q, &headers), &s.token, s.metrics_token.as_deref()) {
        return unauthorized();
    }
    let text = {
        let mut agg = s.agg.lock().expect("the aggregator's lock");
        s.hist.absorb(&mut agg);
        metrics::render(&agg, &s.hist)
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Server-sent events: the full picture first, then each delta (twice a second). A page
/// too slow to keep up gets the full picture again instead of a gap.
async fn events(
    State(s): State<Arc<Shared>>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
) -> Response {
    if !dashboard_token(&s, &q, &headers) {
        return unauthorized();
    }
    let rx = s.deltas.subscribe();
    let first = s.full_json();
    let stream = event_stream(s, first, rx);
    secured(
        Sse::new(stream)
            .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
            .into_response(),
    )
}

fn event_stream(
    s: Arc<Shared>,
    first: String,
    rx: broadcast::Receiver<Arc<str>>,
) -> impl Stream<Item = Result<Event, Infallible>> {
    stream::unfold((Some(first), rx, s), |(first, mut rx, s)| async move {
        if let Some(f) = first {
            return Some((Ok(Event::default().data(f)), (None, rx, s)));
        }
        let data = match rx.recv().await {
            Ok(d) => d.to_string(),
            Err(broadcast::error::RecvError::Lagged(_)) => s.full_json(),
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(Event::default().data(data)), (None, rx, s)))
    })
}
