//! REST on the HTTP port: `POST /api/v2` (one envelope as JSON), the `/api/v1` CRUD
//! routes of the reference, and their OpenAPI 3.1 document at `/api/openapi.json`.
//! Every route builds an envelope and runs it through `dispatch` (the path of gRPC
//! unary calls), so identity, ACLs, limits and errors are those of the stream path.

mod api_v1;
mod api_v2;
pub(crate) mod dispatch;
mod openapi;

use std::sync::Arc;

use actix_web::{web, HttpRequest};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::OpenCoreError;
use crate::services::Services;
use dispatch::Caller;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/api/v2", web::post().to(api_v2::post_envelope))
        .route("/api/openapi.json", web::get().to(openapi::document))
        .route("/api/v1/me", web::get().to(api_v1::me))
        .route("/api/v1/collections", web::get().to(api_v1::collections))
        .route(
            "/api/v1/query/{collectionname}",
            web::get().to(api_v1::query_get),
        )
        .route(
            "/api/v1/query/{collectionname}",
            web::post().to(api_v1::query_post),
        )
        .route(
            "/api/v1/aggregate/{collectionname}",
            web::post().to(api_v1::aggregate),
        )
        .route(
            "/api/v1/count/{collectionname}",
            web::get().to(api_v1::count),
        )
        .route(
            "/api/v1/entities/{collectionname}",
            web::post().to(api_v1::insert),
        )
        .route(
            "/api/v1/entities/{collectionname}",
            web::put().to(api_v1::update),
        )
        .route(
            "/api/v1/entities/{collectionname}/{id}",
            web::delete().to(api_v1::delete),
        );
}

/// An envelope as JSON (`POST /api/v2` request and reply).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct EnvelopeJson {
    /// Command name, e.g. `query`; replies: `queryreply`, or `error`.
    pub command: String,
    /// Request id; the reply carries it in `rid`.
    pub id: String,
    pub rid: String,
    /// Token for this request when there is no `Authorization: Bearer` header.
    pub jwt: String,
    /// 0-3; higher runs first when the server is busy.
    pub priority: i32,
    pub traceid: String,
    pub spanid: String,
    /// The message: a JSON object with the .proto field names (or a string of one, or
    /// protobuf bytes as `{type_url, value}` / a Node Buffer). Error replies carry
    /// `{message, code, stack}`.
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

/// `{message, code}`: `code` is the stable `ErrorResponse.code`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorJson {
    pub message: String,
    pub code: i32,
}

impl From<&OpenCoreError> for ErrorJson {
    fn from(err: &OpenCoreError) -> Self {
        ErrorJson {
            message: err.to_string(),
            code: err.code(),
        }
    }
}

/// The caller of one request. The client address is the socket's: forwarding headers
/// are not trusted, so they cannot move a caller into another address's budget.
pub(crate) fn caller(request: &HttpRequest, envelope_jwt: &str) -> Caller {
    let peer = request.peer_addr();
    let header = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim();
    let token = match header.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => header,
    };
    let token = if token.is_empty() {
        envelope_jwt
    } else {
        token
    };
    Caller {
        ip: peer
            .map(|a| a.ip())
            .unwrap_or(std::net::IpAddr::from([0, 0, 0, 0])),
        peer: peer.map(|a| a.to_string()).unwrap_or_else(|| "rest".into()),
        token: token.to_string(),
    }
}

/// The body, refused past `--max-message-size` as soon as `Content-Length` or the
/// bytes read so far say so (nothing larger is buffered).
async fn read_body(
    services: &Arc<Services>,
    mut payload: web::Payload,
    request: &HttpRequest,
) -> Result<web::BytesMut, OpenCoreError> {
    let limit = services.config.limits.max_message_size;
    let declared = request
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(size) = declared.filter(|size| *size > limit) {
        return Err(OpenCoreError::RestBodyTooLarge { size, limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(0).min(64 * 1024));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|err| OpenCoreError::RestBody(err.to_string()))?;
        if body.len() + chunk.len() > limit {
            return Err(OpenCoreError::RestBodyTooLarge {
                size: body.len() + chunk.len(),
                limit,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
