//! HTTP routes on the HTTP port: the WebSocket endpoint, `/config` (the Rust client
//! reads it before connecting), health probes, the admin view, and `GET /download/{id}`
//! (files, streamed: see `download_file`).

use std::sync::Arc;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::actors::admin::{AdminActor, Stats};
use crate::commands::download::find_readable;
use crate::documents::Scope;
use crate::error::OpenCoreError;
use crate::files::{self, FileReader};
use crate::services::Services;
use crate::transports::websocket;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/ws/v2", web::get().to(websocket::upgrade))
        .route("/config", web::get().to(client_config))
        .route("/livenessprobe", web::get().to(liveness))
        .route("/readyz", web::get().to(readiness))
        .route("/admin/stats", web::get().to(admin_stats))
        .route("/metrics", web::get().to(super::metrics::scrape))
        .route("/download/{id}", web::get().to(download_file))
        .configure(crate::transports::rest::routes)
        .configure(super::admin_api::routes);
}

async fn client_config(services: web::Data<Arc<Services>>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(services.client_config.clone())
}

async fn liveness() -> HttpResponse {
    let hostname = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    let now = bson::DateTime::now()
        .try_to_rfc3339_string()
        .unwrap_or_default();
    HttpResponse::Ok().json(json!({"success": "true", "hostname": hostname, "dt": now}))
}

async fn readiness(services: web::Data<Arc<Services>>) -> HttpResponse {
    if services.is_draining() {
        return HttpResponse::ServiceUnavailable()
            .json(json!({"ready": false, "reason": "shutting down"}));
    }
    // Ready means the store answers.
    match services
        .store
        .count("users", &bson::doc! {"_id": "readiness-probe"})
        .await
    {
        Ok(_) => HttpResponse::Ok().json(json!({"ready": true})),
        Err(err) => HttpResponse::ServiceUnavailable()
            .json(json!({"ready": false, "reason": err.to_string()})),
    }
}

fn bearer(request: &HttpRequest) -> String {
    request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// `GET /download/{id}` with `Authorization: Bearer <jwt>`: the file of the default
/// bucket with this id, if the token's user may read it. 401 without a valid token;
/// 404 when the file is missing or not readable (one answer, so existence is not
/// revealed). The body is streamed chunk by chunk from the store as the client reads
/// (actix pulls the next chunk only when the previous one was sent), with
/// `Content-Length`, `Content-Type` and `Content-Disposition: attachment`.
async fn download_file(
    request: HttpRequest,
    path: web::Path<String>,
    services: web::Data<Arc<Services>>,
) -> HttpResponse {
    let token = bearer(&request);
    if token.is_empty() {
        return HttpResponse::Unauthorized()
            .json(json!({"message": "Authorization: Bearer <jwt> required"}));
    }
    let user = match services.directory().resolve_token(&token).await {
        Ok((user, _)) => user,
        Err(_) => {
            return HttpResponse::Unauthorized()
                .json(json!({"message": "invalid or expired token"}))
        }
    };
    let id = path.into_inner();
    let not_found = || {
        HttpResponse::NotFound()
            .json(json!({"message": OpenCoreError::DownloadDenied(id.clone()).to_string()}))
    };
    let found =
        match Scope::for_user(services.documents.clone(), user, files::FILES_COLLECTION).await {
            Ok(scope) => find_readable(&scope, id.trim(), "").await,
            Err(err) => Err(err),
        };
    let file = match found {
        Ok(Some(file)) => file,
        Ok(None) => return not_found(),
        Err(err) => {
            tracing::warn!(%err, "download over HTTP failed");
            return HttpResponse::ServiceUnavailable().json(json!({"message": err.to_string()}));
        }
    };
    let length = files::length_of(&file);
    let filename = file.get_str("filename").unwrap_or_default().to_string();
    let content_type = file
        .get_str("contentType")
        .ok()
        .filter(|t| !t.is_empty())
        .unwrap_or("application/octet-stream")
        .to_string();
    let reader = services.files.reader(files::DEFAULT_BUCKET, &file);
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header(("Content-Disposition", content_disposition(&filename)))
        .body(actix_web::body::SizedStream::new(length, chunks(reader)))
}

/// The reader's chunks as a body stream; a damaged file ends it with an error (the
/// client sees a short body for the announced length).
fn chunks(
    reader: FileReader,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, files::FileError>> {
    futures_util::stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next_chunk().await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some(reader))),
            Ok(None) => None,
            Err(err) => Some((Err(err), None)),
        }
    })
}

/// `attachment; filename="…"` with quotes and backslashes escaped and control and
/// non-ASCII characters replaced, plus the exact name as RFC 5987 `filename*`.
fn content_disposition(filename: &str) -> String {
    let mut plain = String::with_capacity(filename.len());
    for c in filename.chars() {
        match c {
            '"' | '\\' => {
                plain.push('\\');
                plain.push(c);
            }
            c if c.is_ascii() && !c.is_ascii_control() => plain.push(c),
            _ => plain.push('_'),
        }
    }
    let mut encoded = String::new();
    for byte in filename.bytes() {
        if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

/// Admins only: `Authorization: Bearer <token of a member of admins>`, or the
/// dashboard's sign-in cookie (`admin_api`).
async fn admin_stats(
    request: HttpRequest,
    services: web::Data<Arc<Services>>,
    admin: web::Data<Addr<AdminActor>>,
) -> HttpResponse {
    if let Err(refused) = super::admin_api::authorize(&request, &services).await {
        return refused;
    }
    match admin.send(Stats).await {
        Ok(stats) => HttpResponse::Ok().json(stats),
        Err(_) => {
            HttpResponse::ServiceUnavailable().json(json!({"message": "admin actor unavailable"}))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::content_disposition;

    #[test]
    fn disposition_escapes_what_would_break_the_header() {
        assert_eq!(
            content_disposition("a.txt"),
            "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt"
        );
        let header = content_disposition("x\"y\\z\r\nSet-Cookie: a=b.txt");
        assert!(
            header.starts_with("attachment; filename=\"x\\\"y\\\\z__Set-Cookie: a=b.txt\""),
            "{header}"
        );
        assert!(!header.contains('\r') && !header.contains('\n'));
        let header = content_disposition("rapport é.pdf");
        assert!(header.contains("filename=\"rapport _.pdf\""), "{header}");
        assert!(
            header.ends_with("filename*=UTF-8''rapport%20%C3%A9.pdf"),
            "{header}"
        );
    }
}
