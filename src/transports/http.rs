//! HTTP routes on the HTTP port: the WebSocket endpoint, `/config` (the Rust client
//! reads it before connecting), health probes, and the admin view.

use std::sync::Arc;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::actors::admin::{AdminActor, Stats};
use crate::services::Services;
use crate::transports::websocket;

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/ws/v2", web::get().to(websocket::upgrade))
        .route("/config", web::get().to(client_config))
        .route("/livenessprobe", web::get().to(liveness))
        .route("/readyz", web::get().to(readiness))
        .route("/admin/stats", web::get().to(admin_stats));
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

/// Admins only: `Authorization: Bearer <token of a member of admins>`.
async fn admin_stats(
    request: HttpRequest,
    services: web::Data<Arc<Services>>,
    admin: web::Data<Addr<AdminActor>>,
) -> HttpResponse {
    let token = request
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if token.is_empty() {
        return HttpResponse::Unauthorized()
            .json(json!({"message": "Authorization: Bearer <jwt> required"}));
    }
    match services.directory().resolve_token(&token).await {
        Ok((user, _)) if user.is_admin() => match admin.send(Stats).await {
            Ok(stats) => HttpResponse::Ok().json(stats),
            Err(_) => HttpResponse::ServiceUnavailable()
                .json(json!({"message": "admin actor unavailable"})),
        },
        Ok(_) => HttpResponse::Forbidden().json(json!({"message": "Access denied"})),
        Err(_) => HttpResponse::Unauthorized().json(json!({"message": "invalid or expired token"})),
    }
}
