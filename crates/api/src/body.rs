//! The deadline every request body must arrive by — on every route of the listener, the
//! sandbox simulators' included — so that a stalled body holds its connection no longer.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::HttpMessage;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::error::PayloadError;
use actix_web::middleware::Next;
use actix_web::web::Bytes;
use futures_core::Stream;

/// A body stream that fails with a timed-out I/O error once `sleep` fires.
struct Deadline<S> {
    inner: S,
    sleep: Pin<Box<tokio::time::Sleep>>,
    expired: bool,
}

impl<S> Stream for Deadline<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.expired {
            return Poll::Ready(None);
        }
        if let Poll::Ready(next) = Pin::new(&mut self.inner).poll_next(cx) {
            return Poll::Ready(next);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.expired = true;
                Poll::Ready(Some(Err(timed_out())))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

fn timed_out() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the request body did not arrive in time",
    ))
}

/// Whether a body read failed because the body missed its deadline.
pub fn is_timeout(error: &PayloadError) -> bool {
    matches!(error, PayloadError::Io(e) if e.kind() == std::io::ErrorKind::TimedOut)
}

/// Middleware: the request's body must arrive whole within `timeout` of the request head;
/// after that, reading it fails (the API answers 408, and the connection is closed since
/// the body was never read to its end).
pub async fn deadline(
    timeout: Duration,
    mut request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let payload = request.take_payload();
    let limited: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> = Box::pin(Deadline {
        inner: payload,
        sleep: Box::pin(tokio::time::sleep(timeout)),
        expired: false,
    });
    request.set_payload(actix_web::dev::Payload::from(limited));
    next.call(request).await
}
