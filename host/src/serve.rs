//! The host's HTTP endpoints, which the gateway calls: `POST /session/open`,
//! `POST /session/records` (both with the `pp-session` header) and `GET /health`. The bodies are
//! TLS records; nothing here sees plaintext but the session code.

use crate::session::{RecordSink, SessionError, Sessions};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use futures::StreamExt;
use pp_vocab::session::{OPEN_PATH, RECORDS_PATH, SESSION_HEADER};
use std::sync::Arc;

pub fn router(sessions: Arc<Sessions>) -> Router {
    Router::new()
        .route(OPEN_PATH, post(open))
        .route(RECORDS_PATH, post(records))
        .route("/health", get(|| async { "ok" }))
        .with_state(sessions)
}

pub async fn serve(sessions: Arc<Sessions>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    // A streamed piece leaves at once (Nagle would hold it for the last one's ACK: 40 ms).
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| _ = tcp.set_nodelay(true));
    axum::serve(listener, router(sessions)).await
}

async fn open(State(sessions): State<Arc<Sessions>>, headers: HeaderMap, body: Bytes) -> Response {
    run(sessions, headers, body, |sessions, id, body| sessions.open(id, body)).await
}

/// The answer's records go out as the session makes them (a streamed answer piece by piece).
async fn records(State(sessions): State<Arc<Sessions>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(id) = session_id(&headers) else {
        return answer_error(&SessionError::BadSessionId);
    };
    let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
    let out: RecordSink = Box::new(move |records| sender.send(records).is_ok());
    let step = tokio::task::spawn_blocking(move || sessions.records(&id, &body, out));
    // Nothing sent means the step failed before the answer began: its error is the answer.
    let Some(first) = receiver.recv().await else {
        return match step.await {
            Ok(Err(error)) => answer_error(&error),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "the session step failed\n").into_response(),
        };
    };
    let rest = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|records| (records, receiver))
    });
    let body = futures::stream::once(async { first }).chain(rest).map(Ok::<_, std::convert::Infallible>);
    ([("content-type", "application/octet-stream")], Body::from_stream(body)).into_response()
}

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers.get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_string)
}

/// A step of a session: the session id and the device's TLS records in, the host's out.
type SessionStep = fn(&Sessions, &str, &[u8]) -> Result<Vec<u8>, SessionError>;

/// Runs a session step off the async threads (a request can hold the model for seconds).
async fn run(sessions: Arc<Sessions>, headers: HeaderMap, body: Bytes, step: SessionStep) -> Response {
    let Some(id) = session_id(&headers) else {
        return answer_error(&SessionError::BadSessionId);
    };
    let outcome = tokio::task::spawn_blocking(move || step(&sessions, &id, &body)).await;
    match outcome {
        Ok(Ok(records)) => ([("content-type", "application/octet-stream")], records).into_response(),
        Ok(Err(error)) => answer_error(&error),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "the session step failed\n").into_response(),
    }
}

fn answer_error(error: &SessionError) -> Response {
    let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, [("content-type", "text/plain; charset=utf-8")], format!("{error}\n")).into_response()
}
