//! Sending one request upstream: attempts and retries across endpoints, the deadline for the
//! upstream's answer (which never runs while the client is the one not sending), and the
//! classification of what went wrong.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use http::uri::{Authority, PathAndQuery};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version, header};

use crate::config::UpstreamProtocol;
use crate::telemetry::metrics::UpstreamOutcome;
use crate::upstream::body::{BodyFault, BodyMeter, UpstreamBody};
use crate::upstream::pool::{ResponseBody, SendError};
use crate::util::text::error_chain;

use super::Upstream;
use super::endpoint::{Endpoint, InFlight};

/// Why forwarding failed; decides the status, the metric outcome and the log wording.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("upstream {upstream} ({endpoint}) did not answer within {timeout:?}")]
    Timeout {
        upstream: String,
        endpoint: String,
        timeout: Duration,
    },
    #[error("upstream {upstream} ({endpoint}) unreachable: {detail}")]
    Unreachable {
        upstream: String,
        endpoint: String,
        detail: String,
    },
    #[error("upstream {upstream} ({endpoint}) failed: {detail}")]
    Failed {
        upstream: String,
        endpoint: String,
        detail: String,
    },
    #[error("upstream {upstream}: no healthy endpoint")]
    NoEndpoint { upstream: String },
    /// The client's request body failed while it was being sent: the client's fault, never
    /// counted against the endpoint.
    #[error("{0}")]
    Client(BodyFault),
}

impl ForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Unreachable { .. } | Self::Failed { .. } => StatusCode::BAD_GATEWAY,
            Self::NoEndpoint { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Client(BodyFault::TooLarge(_)) => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Client(BodyFault::Stalled(_)) => StatusCode::REQUEST_TIMEOUT,
            Self::Client(BodyFault::Unreadable(_)) => StatusCode::BAD_REQUEST,
        }
    }
}

/// A request ready to go upstream, minus the endpoint.
pub struct Outbound {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub headers: HeaderMap,
    pub body: UpstreamBody,
    /// The body's progress, when there is a body.
    pub meter: Option<Arc<BodyMeter>>,
    /// Safe to send again: idempotent method and no body.
    pub retryable: bool,
}

impl Upstream {
    /// Sends `out` to an endpoint, retrying idempotent bodiless requests on another endpoint.
    pub async fn forward(
        &self,
        mut out: Outbound,
        timeout: Duration,
    ) -> Result<Response<ResponseBody>, ForwardError> {
        let attempts = if out.retryable { 1 + self.retries } else { 1 };
        // Attempts are few (1 + retries): a fixed array avoids an allocation per request.
        let mut tried_buf = [usize::MAX; 8];
        let mut tried_len = 0;
        let mut last_err = None;
        for attempt in 0..attempts {
            let Some(i) = self.pick(&tried_buf[..tried_len]) else {
                // Everything this request tried got ejected: report what actually happened.
                if let Some(e) = last_err {
                    return Err(e);
                }
                self.metrics
                    .record(UpstreamOutcome::NoEndpoint, Duration::ZERO);
                return Err(ForwardError::NoEndpoint {
                    upstream: self.name.clone(),
                });
            };
            if let Some(slot) = tried_buf.get_mut(tried_len) {
                *slot = i;
                tried_len += 1;
            }
            if attempt > 0 {
                self.metrics.retried();
            }
            let last = attempt + 1 == attempts;
            let endpoint = &self.endpoints[i];
            let req = self.build(&mut out, endpoint, last);
            endpoint.in_flight.fetch_add(1, Ordering::Relaxed);
            let _in_flight = InFlight(endpoint);
            let started = Instant::now();
            let send = endpoint.pool.send(&self.connector, req);
            let result = match &out.meter {
                None => tokio::time::timeout(timeout, send)
                    .await
                    .map_err(|_| Elapsed),
                // Boxed: held here beside the bodiless path's, it would double the size of
                // every request's future for the sake of requests with a body.
                Some(meter) => within_deadline(Box::pin(send), meter, timeout).await,
            };
            let elapsed = started.elapsed();
            let err = match result {
                Ok(Ok(resp)) => {
                    self.metrics.record(UpstreamOutcome::Response, elapsed);
                    let status = resp.status();
                    self.report(i, !status.is_server_error());
                    if !last && self.retry_on_status.contains(&status.as_u16()) {
                        continue;
                    }
                    return Ok(resp);
                }
                Err(Elapsed) => {
                    self.metrics.record(UpstreamOutcome::Timeout, elapsed);
                    self.report(i, false);
                    // The request may have been processed: do not send it again.
                    return Err(ForwardError::Timeout {
                        upstream: self.name.clone(),
                        endpoint: endpoint.authority.to_string(),
                        timeout,
                    });
                }
                Ok(Err(e)) => e,
            };
            // A body that failed by the client's doing (too slow, too large, malformed) is what
            // broke the attempt: the client's fault, not the endpoint's.
            if let Some(fault) = out.meter.as_ref().and_then(|m| m.fault()) {
                self.metrics.record(UpstreamOutcome::ClientError, elapsed);
                return Err(ForwardError::Client(fault.clone()));
            }
            last_err = Some(self.attempt_failed(i, err, elapsed));
        }
        Err(last_err.unwrap_or(ForwardError::NoEndpoint {
            upstream: self.name.clone(),
        }))
    }

    /// An attempt on endpoint `i` that got no response: counted, reported to outlier
    /// detection when the endpoint could not be reached, and described.
    #[cold]
    fn attempt_failed(&self, i: usize, err: SendError, elapsed: Duration) -> ForwardError {
        let endpoint = self.endpoints[i].authority.to_string();
        match err {
            SendError::Connect(err) => {
                self.metrics.record(UpstreamOutcome::ConnectError, elapsed);
                self.report(i, false);
                ForwardError::Unreachable {
                    upstream: self.name.clone(),
                    endpoint,
                    detail: error_chain(&*err),
                }
            }
            SendError::Request(err) => {
                self.metrics.record(UpstreamOutcome::Error, elapsed);
                ForwardError::Failed {
                    upstream: self.name.clone(),
                    endpoint,
                    detail: error_chain(&err),
                }
            }
        }
    }

    /// The request for one attempt. Headers are copied only while another attempt may follow.
    fn build(&self, out: &mut Outbound, endpoint: &Endpoint, last: bool) -> Request<UpstreamBody> {
        let mut headers = if last {
            std::mem::take(&mut out.headers)
        } else {
            out.headers.clone()
        };
        let (uri, version) = match self.protocol {
            UpstreamProtocol::Http1 => (Uri::from(out.path_and_query.clone()), Version::HTTP_11),
            UpstreamProtocol::H2 => {
                // The request's authority (what routing saw) becomes :authority; a Host beside
                // it would make the request malformed.
                let authority = headers
                    .remove(header::HOST)
                    .and_then(|h| Authority::try_from(h.as_bytes()).ok())
                    .unwrap_or_else(|| endpoint.authority.clone());
                (
                    self.absolute_uri(authority, out.path_and_query.clone()),
                    Version::HTTP_2,
                )
            }
        };
        let mut req = Request::new(if out.retryable {
            UpstreamBody::Empty
        } else {
            std::mem::replace(&mut out.body, UpstreamBody::Empty)
        });
        *req.method_mut() = out.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;
        *req.version_mut() = version;
        req
    }

    /// `scheme://authority/path?query`, how HTTP/2 carries `:scheme` and `:authority`.
    pub(super) fn absolute_uri(&self, authority: Authority, pq: PathAndQuery) -> Uri {
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(authority)
            .path_and_query(pq)
            .build()
            .unwrap_or_default()
    }
}

/// The upstream's time to answer ran out.
struct Elapsed;

/// Runs `send` until the upstream's answer is due, for a request with a body: `timeout` after
/// the body was complete or last taken by the upstream, and no upstream deadline while the
/// client is the one not sending (the body's own stall timer fails it then, as the client's
/// fault). A bodiless request simply gets `timeout` from the start.
async fn within_deadline<F: Future>(
    mut send: Pin<Box<F>>,
    meter: &BodyMeter,
    timeout: Duration,
) -> Result<F::Output, Elapsed> {
    // Re-checked at most every `timeout / 4` (and at least every second) while it is open.
    let tick = (timeout / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        let wake = match meter.upstream_deadline(timeout) {
            Some(d) if d <= Instant::now() => return Err(Elapsed),
            Some(d) => d.min(Instant::now() + tick),
            None => Instant::now() + tick,
        };
        tokio::select! {
            out = send.as_mut() => return Ok(out),
            () = tokio::time::sleep_until(tokio::time::Instant::from_std(wake)) => {}
        }
    }
}
