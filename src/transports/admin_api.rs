//! `/admin/api/*`: the admin's JSON API behind the dashboard (`admin_ui.rs`).
//!
//! Callers authenticate with `Authorization: Bearer <jwt>` or with the `opencore_admin`
//! cookie that `POST /admin/api/signin` sets (`HttpOnly; SameSite=Strict; Path=/admin`).
//! No or invalid credentials → 401, a valid non-admin → 403, always `{"message": …}`.
//! A cookie is sent by the browser on its own, so a state-changing request carried by
//! the cookie must also carry `X-Requested-With` (a cross-site form cannot set it, and
//! a cross-site `fetch` with it needs a CORS preflight this server never grants).
//! The data comes from the `AdminActor` (`actors/admin.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use actix::Addr;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use crate::actors::admin::{
    Actors, AdminActor, CloseConnection, ConfigView, GetConnection, Health, ListConnections,
    QueuesView, WatchesView, MAX_PAGE,
};
use crate::auth::ResolvedUser;
use crate::proto::{Envelope, SigninRequest, SigninResponse};
use crate::protocol::envelope::pack;
use crate::services::Services;
use crate::transports::rest::dispatch::{self, Caller};
use prost::Message as _;

pub const COOKIE: &str = "opencore_admin";
/// The header a cookie-authenticated state change must carry.
pub const CSRF_HEADER: &str = "x-requested-with";

pub fn routes(config: &mut web::ServiceConfig) {
    config
        .route("/admin/api/signin", web::post().to(signin))
        .route("/admin/api/signout", web::post().to(signout))
        .route("/admin/api/connections", web::get().to(connections))
        .route("/admin/api/connections/{id}", web::get().to(connection))
        .route("/admin/api/connections/{id}", web::delete().to(close))
        .route("/admin/api/actors", web::get().to(actors))
        .route("/admin/api/queues", web::get().to(queues))
        .route("/admin/api/watches", web::get().to(watches))
        .route("/admin/api/health", web::get().to(health))
        .route("/admin/api/config", web::get().to(config_view))
        .configure(super::admin_ui::routes);
}

type Admin = web::Data<Addr<AdminActor>>;
type Shared = web::Data<Arc<Services>>;

fn message(status: actix_web::http::StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status).json(json!({"message": text}))
}

fn unauthorized(text: &str) -> HttpResponse {
    message(actix_web::http::StatusCode::UNAUTHORIZED, text)
}

fn forbidden() -> HttpResponse {
    message(
        actix_web::http::StatusCode::FORBIDDEN,
        "Access denied: admins only",
    )
}

fn unavailable() -> HttpResponse {
    message(
        actix_web::http::StatusCode::SERVICE_UNAVAILABLE,
        "admin actor unavailable",
    )
}

fn cookie_value(request: &HttpRequest, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .filter(|value| !value.is_empty())
}

/// Who is calling: an admin (and whether by cookie), or the refusal to answer with.
pub async fn authorize(
    request: &HttpRequest,
    services: &Services,
) -> Result<(Arc<ResolvedUser>, bool), HttpResponse> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_string())
        .filter(|v| !v.is_empty());
    let (token, by_cookie) = match bearer {
        Some(token) => (token, false),
        None => match cookie_value(request, COOKIE) {
            Some(token) => (token, true),
            None => return Err(unauthorized("sign in, or send Authorization: Bearer <jwt>")),
        },
    };
    match services.directory().resolve_token(&token).await {
        Ok((user, _)) if user.is_admin() => Ok((user, by_cookie)),
        Ok(_) => Err(forbidden()),
        Err(_) => Err(unauthorized("invalid or expired token")),
    }
}

fn user_json(user: &ResolvedUser) -> serde_json::Value {
    json!({"_id": user.id, "name": user.name, "username": user.username})
}

#[derive(serde::Deserialize)]
struct Credentials {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// `POST /admin/api/signin` `{username, password}`: the same password check as the
/// `signin` command; an admin gets the session cookie and its user back.
async fn signin(request: HttpRequest, body: web::Bytes, services: Shared) -> HttpResponse {
    let Ok(credentials) = serde_json::from_slice::<Credentials>(&body) else {
        return message(
            actix_web::http::StatusCode::BAD_REQUEST,
            "expected {\"username\": …, \"password\": …}",
        );
    };
    // The `signin` command through the unary dispatch, like REST: the per-address budget
    // and the session family's bcrypt concurrency apply, so this form is no faster a
    // way to guess passwords (or to load the CPU) than any other sign-in.
    let envelope = Envelope {
        command: "signin".into(),
        id: "admin-signin".into(),
        data: Some(pack(&SigninRequest {
            username: credentials.username,
            password: credentials.password,
            ..Default::default()
        })),
        ..Default::default()
    };
    let caller = Caller {
        token: String::new(),
        ..crate::transports::rest::caller(&request, "")
    };
    let reply = match dispatch::run(&services, &caller, envelope).await {
        Ok(Some(reply)) => reply,
        Ok(None) => return unavailable(),
        Err(err) => return refused(err.code()),
    };
    if let Some(error) = dispatch::error_of(&reply) {
        return refused(error.code);
    }
    let Some(jwt) = reply
        .data
        .as_ref()
        .and_then(|any| SigninResponse::decode(any.value.as_slice()).ok())
        .map(|response| response.jwt)
    else {
        return unavailable();
    };
    let user = match services.directory().resolve_token(&jwt).await {
        Ok((user, _)) => user,
        Err(_) => return unavailable(),
    };
    if !user.is_admin() {
        return forbidden();
    }
    let max_age = services.config.short_token_ttl.as_secs();
    tracing::info!(user = %user.username, "admin signed in to the dashboard");
    HttpResponse::Ok()
        .insert_header((
            header::SET_COOKIE,
            format!("{COOKIE}={jwt}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age={max_age}"),
        ))
        .json(json!({"user": user_json(&user)}))
}

/// A refused sign-in: one answer for unknown users, wrong passwords and disabled users;
/// 429 when the caller's budget is spent.
fn refused(code: i32) -> HttpResponse {
    match code {
        3003 | 3004 | 3006 | 3007 => unauthorized("Invalid username or password"),
        2005 | 2006 | 2060 | 2065 => message(
            actix_web::http::StatusCode::TOO_MANY_REQUESTS,
            "too many sign-in attempts from this address; try again shortly",
        ),
        _ => unavailable(),
    }
}

/// `POST /admin/api/signout`: clears the cookie (whoever asks: it only removes it).
async fn signout() -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::SET_COOKIE,
            format!("{COOKIE}=; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=0"),
        ))
        .json(json!({"message": "signed out"}))
}

fn number(query: &HashMap<String, String>, key: &str, default: usize) -> usize {
    query
        .get(key)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn connections(
    request: HttpRequest,
    query: web::Query<HashMap<String, String>>,
    services: Shared,
    admin: Admin,
) -> HttpResponse {
    if let Err(refused) = authorize(&request, &services).await {
        return refused;
    }
    let text = |key: &str| query.get(key).filter(|v| !v.is_empty()).cloned();
    let list = ListConnections {
        user: text("user"),
        transport: text("transport"),
        agent: text("agent"),
        page: number(&query, "page", 1),
        limit: number(&query, "limit", 100).min(MAX_PAGE),
    };
    match admin.send(list).await {
        Ok(page) => HttpResponse::Ok().json(page),
        Err(_) => unavailable(),
    }
}

fn not_found(id: &str) -> HttpResponse {
    message(
        actix_web::http::StatusCode::NOT_FOUND,
        &format!("no connection {id} on this node"),
    )
}

async fn connection(
    request: HttpRequest,
    path: web::Path<String>,
    services: Shared,
    admin: Admin,
) -> HttpResponse {
    if let Err(refused) = authorize(&request, &services).await {
        return refused;
    }
    let Ok(id) = path.parse::<u64>() else {
        return not_found(&path);
    };
    match admin.send(GetConnection(id)).await {
        Ok(Some(found)) => HttpResponse::Ok().json(found),
        Ok(None) => not_found(&path),
        Err(_) => unavailable(),
    }
}

/// `DELETE /admin/api/connections/{id}`: closes the connection now (logged with who).
async fn close(
    request: HttpRequest,
    path: web::Path<String>,
    services: Shared,
    admin: Admin,
) -> HttpResponse {
    let user = match authorize(&request, &services).await {
        Ok((user, by_cookie)) => {
            if by_cookie && !request.headers().contains_key(CSRF_HEADER) {
                return message(
                    actix_web::http::StatusCode::FORBIDDEN,
                    "cookie-authenticated changes need the X-Requested-With header",
                );
            }
            user
        }
        Err(refused) => return refused,
    };
    let Ok(id) = path.parse::<u64>() else {
        return not_found(&path);
    };
    let close = CloseConnection {
        id,
        by: format!("{} ({})", user.username, user.id),
    };
    match admin.send(close).await {
        Ok(true) => HttpResponse::Ok().json(json!({"message": format!("connection {id} closed")})),
        Ok(false) => not_found(&path),
        Err(_) => unavailable(),
    }
}

/// The read-only views: authorize, ask the admin actor, answer its JSON.
macro_rules! view {
    ($name:ident, $message:expr) => {
        async fn $name(request: HttpRequest, services: Shared, admin: Admin) -> HttpResponse {
            if let Err(refused) = authorize(&request, &services).await {
                return refused;
            }
            match admin.send($message).await {
                Ok(value) => HttpResponse::Ok().json(value),
                Err(_) => unavailable(),
            }
        }
    };
}

view!(actors, Actors);
view!(queues, QueuesView);
view!(watches, WatchesView);
view!(health, Health);
view!(config_view, ConfigView);
