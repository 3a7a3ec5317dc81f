//! The admin dashboard: one HTML page, its script and its style, embedded in the binary
//! (no build step, nothing from a CDN). The page is served under a strict
//! `Content-Security-Policy`, so its script is a file (`/admin/app.js`), never inline,
//! and it builds the DOM with `textContent` (user names come from clients).

use actix_web::{http::header, web, HttpResponse};

const INDEX: &str = include_str!("admin_ui/index.html");
const SCRIPT: &str = include_str!("admin_ui/app.js");
const STYLE: &str = include_str!("admin_ui/app.css");

/// Everything from this origin only; no framing, no plugins, forms post here only.
pub const CSP: &str = "default-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/admin", web::get().to(redirect))
        .route("/admin/", web::get().to(index))
        .route("/admin/app.js", web::get().to(script))
        .route("/admin/app.css", web::get().to(style));
}

fn asset(content_type: &str, body: &'static str) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

async fn redirect() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/admin/"))
        .finish()
}

async fn index() -> HttpResponse {
    asset("text/html; charset=utf-8", INDEX)
}

async fn script() -> HttpResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> HttpResponse {
    asset("text/css; charset=utf-8", STYLE)
}
