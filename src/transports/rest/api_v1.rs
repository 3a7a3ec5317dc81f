//! `/api/v1`: the reference's CRUD routes (tsoa), each one command run through
//! `dispatch` as the token's user. A Bearer token is required (401 without one);
//! errors are `{message, code}` with the status of their code.

// `Err(HttpResponse)` is the finished answer of a failed step, returned once per
// request; boxing it would only add an allocation.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use prost::{Message, Name};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::{IntoParams, ToSchema};

use crate::error::OpenCoreError;
use crate::proto::{
    AggregateRequest, AggregateResponse, CountRequest, CountResponse, DeleteOneRequest,
    DeleteOneResponse, Envelope, InsertOneRequest, InsertOneResponse, ListCollectionsRequest,
    ListCollectionsResponse, QueryRequest, QueryResponse, SigninRequest, SigninResponse,
    UpdateOneRequest, UpdateOneResponse,
};
use crate::protocol::envelope::pack;
use crate::services::Services;
use crate::transports::rest::dispatch::{self, Caller};
use crate::transports::rest::{caller, read_body, ErrorJson};

type ServicesData = web::Data<Arc<Services>>;

fn failure(err: &OpenCoreError) -> HttpResponse {
    HttpResponse::build(dispatch::status_for(err.code())).json(ErrorJson::from(err))
}

/// The caller, or 401 when there is no token at all (anonymous REST is not offered).
fn signed(request: &HttpRequest) -> Result<Caller, HttpResponse> {
    let caller = caller(request, "");
    if caller.token.is_empty() {
        return Err(failure(&OpenCoreError::NotSignedIn));
    }
    Ok(caller)
}

/// Runs `command` with `message` as the caller and decodes its reply.
async fn call<Q: Message + Name, R: Message + Default>(
    services: &Arc<Services>,
    caller: &Caller,
    command: &str,
    message: &Q,
) -> Result<R, HttpResponse> {
    let envelope = Envelope {
        command: command.to_string(),
        id: "rest".into(),
        data: Some(pack(message)),
        ..Default::default()
    };
    let reply = dispatch::run(services, caller, envelope)
        .await
        .map_err(|err| failure(&err))?
        .ok_or_else(|| failure(&OpenCoreError::Internal))?;
    if let Some(error) = dispatch::error_of(&reply) {
        return Err(
            HttpResponse::build(dispatch::status_for(error.code)).json(ErrorJson {
                message: error.message,
                code: error.code,
            }),
        );
    }
    let data = reply.data.unwrap_or_default();
    R::decode(data.value.as_slice()).map_err(|_| failure(&OpenCoreError::Internal))
}

/// A JSON string from a command's reply as a JSON value (the commands answer text).
fn parsed(text: &str) -> HttpResponse {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => HttpResponse::Ok().json(value),
        Err(_) => failure(&OpenCoreError::Internal),
    }
}

/// A JSON parameter that may come as an object/array or as text holding one.
fn as_text(value: &Option<Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

macro_rules! try_or_return {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(response) => return response,
        }
    };
}

/// The signed-in user (validates the token like `signin{validateonly}`).
#[utoipa::path(get, path = "/api/v1/me", tag = "api/v1",
    responses((status = 200, description = "The token's user", body = Object),
              (status = 401, body = ErrorJson)),
    security(("bearer" = [])))]
pub async fn me(request: HttpRequest, services: ServicesData) -> HttpResponse {
    let caller = try_or_return!(signed(&request));
    let message = SigninRequest {
        jwt: caller.token.clone(),
        validateonly: true,
        agent: "rest".into(),
        ..Default::default()
    };
    let reply: SigninResponse = try_or_return!(call(&services, &caller, "signin", &message).await);
    HttpResponse::Ok().json(reply.user)
}

/// Collections the user may see.
#[utoipa::path(get, path = "/api/v1/collections", tag = "api/v1",
    responses((status = 200, description = "Array of collection descriptions", body = Vec<Object>),
              (status = 401, body = ErrorJson)),
    security(("bearer" = [])))]
pub async fn collections(request: HttpRequest, services: ServicesData) -> HttpResponse {
    let caller = try_or_return!(signed(&request));
    let reply: ListCollectionsResponse = try_or_return!(
        call(
            &services,
            &caller,
            "listcollections",
            &ListCollectionsRequest::default()
        )
        .await
    );
    parsed(&reply.results)
}

/// Query parameters (GET) or body (POST) of a query; `query`, `projection` and
/// `orderby` are JSON (objects, or text holding JSON).
#[derive(Debug, Default, Deserialize, ToSchema, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct QueryParams {
    #[schema(value_type = Object)]
    #[param(value_type = String)]
    pub query: Option<Value>,
    #[schema(value_type = Object)]
    #[param(value_type = String)]
    pub projection: Option<Value>,
    #[schema(value_type = Object)]
    #[param(value_type = String)]
    pub orderby: Option<Value>,
    pub top: Option<i32>,
    pub skip: Option<i32>,
    pub queryas: Option<String>,
}

async fn run_query(
    request: HttpRequest,
    services: ServicesData,
    collectionname: String,
    params: QueryParams,
) -> HttpResponse {
    let caller = try_or_return!(signed(&request));
    let message = QueryRequest {
        collectionname,
        query: as_text(&params.query),
        projection: as_text(&params.projection),
        orderby: as_text(&params.orderby),
        top: params.top.unwrap_or(100),
        skip: params.skip.unwrap_or(0),
        queryas: params.queryas.unwrap_or_default(),
        explain: false,
    };
    let reply: QueryResponse = try_or_return!(call(&services, &caller, "query", &message).await);
    parsed(&reply.results)
}

/// Documents of a collection the user may read (GET: parameters in the query string).
#[utoipa::path(get, path = "/api/v1/query/{collectionname}", tag = "api/v1",
    params(("collectionname" = String, Path), QueryParams),
    responses((status = 200, description = "Array of documents", body = Vec<Object>),
              (status = 400, body = ErrorJson), (status = 401, body = ErrorJson)),
    security(("bearer" = [])))]
pub async fn query_get(
    request: HttpRequest,
    path: web::Path<String>,
    params: web::Query<QueryParams>,
    services: ServicesData,
) -> HttpResponse {
    run_query(request, services, path.into_inner(), params.into_inner()).await
}

/// Documents of a collection the user may read (POST: parameters in a JSON body).
#[utoipa::path(post, path = "/api/v1/query/{collectionname}", tag = "api/v1",
    params(("collectionname" = String, Path)),
    request_body = QueryParams,
    responses((status = 200, description = "Array of documents", body = Vec<Object>),
              (status = 400, body = ErrorJson), (status = 401, body = ErrorJson),
              (status = 413, body = ErrorJson)),
    security(("bearer" = [])))]
pub async fn query_post(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    services: ServicesData,
) -> HttpResponse {
    if let Err(response) = signed(&request) {
        return response;
    }
    let params: QueryParams = try_or_return!(json_body(&services, payload, &request).await);
    run_query(request, services, path.into_inner(), params).await
}

async fn json_body<T: serde::de::DeserializeOwned>(
    services: &Arc<Services>,
    payload: web::Payload,
    request: &HttpRequest,
) -> Result<T, HttpResponse> {
    let body = read_body(services, payload, request)
        .await
        .map_err(|err| failure(&err))?;
    serde_json::from_slice(&body).map_err(|err| failure(&OpenCoreError::RestBody(err.to_string())))
}

/// Runs a pipeline: the body is the pipeline array (or `{"aggregates": [...]}`).
#[utoipa::path(post, path = "/api/v1/aggregate/{collectionname}", tag = "api/v1",
    params(("collectionname" = String, Path)),
    request_body(content = Vec<Object>, description = "Aggregation pipeline"),
    responses((status = 200, description = "Array of results", body = Vec<Object>),
              (status = 400, body = ErrorJson), (status = 401, body = ErrorJson)),
    security(("bearer" = [])))]
pub async fn aggregate(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    services: ServicesData,
) -> HttpResponse {
    let caller = try_or_return!(signed(&request));
    let body: Value = try_or_return!(json_body(&services, payload, &request).await);
    let pipeline = match body {
        Value::Object(mut map) => map.remove("aggregates").unwrap_or(Value::Null),
        other => other,
    };
    let message = AggregateRequest {
        collectionname: path.into_inner(),
        aggregates: as_text(&Some(pipeline)),
        ..Default::default()
    };
    let reply: AggregateResponse =
        try_or_return!(call(&services, &caller, "aggregate", &message).await);
    parsed(&reply.results)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(default)]
pub struct CountParams {
    /// JSON filter.
    pub query: Option<String>,
    pub queryas: Option<String>,
}

/// Number of readable documents matching `query`.
#[utoipa::path(get, path = "/api/v1/count/{collectionname}", tag = "api/v1",
    params(("collectionname" = String, Path), CountParams),
    responses((status = 200, description = "The count", body = i32),
              (status = 400, body = ErrorJson), (status = 401, body = ErrorJson)),
    security(("bearer" = [])))]
pub async fn count(
    request: HttpRequest,
    path: web::Path<String>,
    params: web::Query<CountParams>,
    services: ServicesData,
) -> HttpResponse {
    let caller = try_or_return!(signed(&request));
    let params = params.into_inner();
    let message = CountRequest {
        collectionname: path.into_inner(),
        query: params.query.unwrap_or_default(),
        queryas: params.queryas.unwrap_or_default(),
        explain: false,
    };
    let reply: CountResponse = try_or_return!(call(&services, &caller, "count", &message).await);
    HttpResponse::Ok().json(reply.result)
}

/// Inserts the body as one document; answers the stored document.
#[utoipa::path(post, path = "/api/v1/entities/{collectionname}", tag = "api/v1",
    params(("collectionname" = String, Path)),
    request_body(content = Object, description = "The document"),
    responses((status = 200, description = "The inserted document", body = Object),
              (status = 400, body = ErrorJson), (status = 401, body = ErrorJson),
              (status = 403, body = ErrorJson), (status = 413, body = ErrorJson)),
    security(("bearer" = [])))]
pub async fn insert(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    services: ServicesData,
) -> HttpResponse {
    let caller = try_or_return!(signed(&request));
    let item: Value = try_or_return!(json_body(&services, payload, &request).await);
    let message = InsertOneRequest {
        collectionname: path.into_inner(),
        item: item.to_string(),
        ..Default::default()
    };
    let reply: InsertOneResponse =
        try_or_return!(call(&services, &caller, "insertone", &message).await);
    parsed(&reply.result)
}

/// Replaces the document with the body's `_id` by the body.
#[utoipa::path(put, path = "/api/v1/entities/{collectionname}", tag = "api/v1",
    params(("collectionname" = String, Path)),
    request_body(content = Object, description = "The full document, with `_id`"),
    responses((status = 200, description = "The updated document", body = Object),
              (status = 400, body = ErrorJson), (status = 401, body = ErrorJson),
              (status = 403, body = ErrorJson), (status = 404, body = ErrorJson)),
    security(("bearer" = [])))]
pub async fn update(
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    services: ServicesData,
) -> HttpResponse {
    let caller = try_or_return!(signed(&request));
    let item: Value = try_or_return!(json_body(&services, payload, &request).await);
    let message = UpdateOneRequest {
        collectionname: path.into_inner(),
        item: item.to_string(),
        ..Default::default()
    };
    let reply: UpdateOneResponse =
        try_or_return!(call(&services, &caller, "updateone", &message).await);
    parsed(&reply.result)
}

/// Deletes one document by id.
#[utoipa::path(delete, path = "/api/v1/entities/{collectionname}/{id}", tag = "api/v1",
    params(("collectionname" = String, Path), ("id" = String, Path)),
    responses((status = 200, description = "`{affectedrows}`", body = Object),
              (status = 401, body = ErrorJson), (status = 403, body = ErrorJson),
              (status = 404, body = ErrorJson)),
    security(("bearer" = [])))]
pub async fn delete(
    request: HttpRequest,
    path: web::Path<(String, String)>,
    services: ServicesData,
) -> HttpResponse {
    let caller = try_or_return!(signed(&request));
    let (collectionname, id) = path.into_inner();
    let message = DeleteOneRequest {
        collectionname,
        id,
        recursive: false,
    };
    let reply: DeleteOneResponse =
        try_or_return!(call(&services, &caller, "deleteone", &message).await);
    HttpResponse::Ok().json(json!({"affectedrows": reply.affectedrows}))
}
