//! The request timeout: a request not answered within `request_timeout` gets 408.
//!
//! Why not tower-http's `TimeoutLayer`, which did this before: it starts a timer for
//! every request, and a tokio timer is registered on its first poll and removed when it
//! is dropped, with a read of the clock for its deadline. Most requests of an API
//! behind this server (a bearer `/auth/me`, forward authentication, a cookie read)
//! are answered in their first poll, from memory, and never needed the timer: a
//! profile of `/auth/me` under load (`perf record`) put the timer at about 4 % of the
//! server's samples, though `bench/peers` then measured the route only 0.1–0.2 µs a
//! request cheaper without it (docs/BENCHMARKS.md). This one polls the request first
//! and starts the timer only when the request waits (on the database, the hasher, a
//! slow body), so a request's clock starts at its first wait; what comes before is
//! work on the CPU of a few microseconds.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};

/// The layer of [`Timeout`]: `after` is the longest a request may wait.
#[derive(Clone, Copy, Debug)]
pub struct TimeoutLayer {
    after: Duration,
}

impl TimeoutLayer {
    /// Requests answered 408 when they take longer than `after` from their first wait.
    pub fn new(after: Duration) -> TimeoutLayer {
        TimeoutLayer { after }
    }
}

impl<S> tower::Layer<S> for TimeoutLayer {
    type Service = Timeout<S>;

    fn layer(&self, inner: S) -> Timeout<S> {
        Timeout {
            inner,
            after: self.after,
        }
    }
}

/// Answers 408 (empty body; `error::finish` writes the JSON error) when the inner
/// service has not answered within the timeout of its first wait.
#[derive(Clone, Debug)]
pub struct Timeout<S> {
    inner: S,
    after: Duration,
}

impl<S, B> tower::Service<Request<B>> for Timeout<S>
where
    S: tower::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        TimeoutFuture {
            inner: self.inner.call(request),
            sleep: None,
            after: self.after,
        }
    }
}

pin_project_lite::pin_project! {
    /// The answer of [`Timeout`].
    pub struct TimeoutFuture<F> {
        #[pin]
        inner: F,
        // Started at the request's first wait.
        #[pin]
        sleep: Option<tokio::time::Sleep>,
        after: Duration,
    }
}

impl<F, E> Future for TimeoutFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(answer) = this.inner.poll(cx) {
            return Poll::Ready(answer);
        }
        if this.sleep.is_none() {
            this.sleep.set(Some(tokio::time::sleep(*this.after)));
        }
        if let Some(sleep) = this.sleep.as_pin_mut() {
            ready!(sleep.poll(cx));
        }
        Poll::Ready(Ok(StatusCode::REQUEST_TIMEOUT.into_response()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::{Service as _, ServiceExt as _};

    fn answering_after(
        wait: Duration,
    ) -> impl tower::Service<
        Request<()>,
        Response = Response,
        Error = std::convert::Infallible,
        Future = impl Future<Output = Result<Response, std::convert::Infallible>>,
    > + Clone {
        tower::service_fn(move |_: Request<()>| async move {
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            Ok::<_, std::convert::Infallible>(StatusCode::OK.into_response())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_that_waits_too_long_gets_408_and_one_in_time_its_answer() {
        let layer = TimeoutLayer::new(Duration::from_secs(5));
        let mut slow = tower::Layer::layer(&layer, answering_after(Duration::from_secs(6)));
        let answer = slow.ready().await.unwrap().call(Request::new(())).await;
        assert_eq!(answer.unwrap().status(), StatusCode::REQUEST_TIMEOUT);
        let mut in_time = tower::Layer::layer(&layer, answering_after(Duration::from_secs(4)));
        let answer = in_time.ready().await.unwrap().call(Request::new(())).await;
        assert_eq!(answer.unwrap().status(), StatusCode::OK);
        let mut at_once = tower::Layer::layer(&layer, answering_after(Duration::ZERO));
        let answer = at_once.ready().await.unwrap().call(Request::new(())).await;
        assert_eq!(answer.unwrap().status(), StatusCode::OK);
    }
}
