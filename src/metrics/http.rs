//! The `/metrics` endpoint: HTTP/1.1 on `listen.metrics`, `GET /metrics` answers the text
//! exposition format, anything else 404. Bounded: at most `CONNECTIONS_MAX` connections at
//! once (more are closed at accept) and each lives at most `CONNECTION_MS_MAX`. Never
//! touches Raft state: rendering reads the registry, the scrape hook's counters and the
//! process's own figures from `/proc/self` (counting its open file descriptors lists
//! `/proc/self/fd` on kernels before 6.2: milliseconds with many clients), on a blocking
//! thread, never the node's own.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::{MetricsError, NodeMetrics};

/// Scrapers (and other HTTP clients) connected at once.
pub const CONNECTIONS_MAX: usize = 64;
/// One connection is closed after this long, whatever it is doing.
pub const CONNECTION_MS_MAX: u64 = 30_000;
/// Pause after a failed accept (out of file descriptors) before the next one.
pub const ACCEPT_RETRY_MS: u64 = 10;
/// The exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Binds `addr`.
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, MetricsError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Listen { addr, source })
}

async fn answer(metrics: NodeMetrics, method: Method, path: &str) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (&method, path) {
        (&Method::GET, "/metrics") => {
            match tokio::task::spawn_blocking(move || metrics.render()).await {
                Ok(body) => (StatusCode::OK, CONTENT_TYPE, body),
                Err(error) => {
                    tracing::warn!(%error, "rendering the metrics failed");
                    let body = "rendering the metrics failed\n".to_string();
                    (StatusCode::INTERNAL_SERVER_ERROR, "text/plain", body)
                }
            }
        }
        (&Method::GET, "/") => (
            StatusCode::OK,
            "text/plain",
            "shardkv: metrics at /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    if let Ok(value) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, value);
    }
    response
}

async fn connection(stream: tokio::net::TcpStream, metrics: NodeMetrics) {
    let service = service_fn(move |req: Request<Incoming>| {
        let (method, path) = (req.method().clone(), req.uri().path().to_string());
        let metrics = metrics.clone();
        async move { Ok::<_, Infallible>(answer(metrics, method, &path).await) }
    });
    let conn = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    let limit = Duration::from_millis(CONNECTION_MS_MAX);
    match tokio::time::timeout(limit, conn).await {
        Ok(Err(error)) => tracing::debug!(%error, "metrics connection failed"),
        Ok(Ok(())) => {}
        Err(_) => tracing::debug!("metrics connection closed at its time limit"),
    }
}

/// Serves `/metrics` on `listener` until the returned task is aborted.
pub fn spawn(listener: TcpListener, metrics: NodeMetrics) -> JoinHandle<()> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(CONNECTIONS_MAX));
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accepting a metrics connection failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_MS)).await;
                    continue;
                }
            };
            let Ok(permit) = permits.clone().try_acquire_owned() else {
                tracing::debug!("metrics connections at their bound; one closed");
                continue;
            };
            let metrics = metrics.clone();
            tokio::spawn(async move {
                connection(stream, metrics).await;
                drop(permit);
            });
        }
    })
}
