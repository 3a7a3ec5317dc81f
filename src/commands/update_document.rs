//! `updatedocument`: update operators applied to every document matching a query that
//! the caller may update. Unlike the reference, each updated document gets its
//! `_version` raised by one, fresh `_modified*` stamps and a history record of its
//! previous version.
//! Operators may not touch `_type`, `_id`, `_version`, `_created*`, `_modified*`;
//! on `users` not `passwordhash` (a `$set` of `newpassword` sets a new hash) and, for
//! non-admins, not `username`, `dbusage`, `dblocked` and the validation flags.
//!
//! Matches are updated in pages of `PAGE` documents in `_id` order (`id_pages`), so a
//! query matching a whole collection never holds more than one page in memory, here or
//! in the store's writer; every page gets its history records before its update.

use bson::{doc, Bson, DateTime, Document};
use futures_util::future::join_all;

use super::{CommandContext, Outcome};
use crate::acl::Right;
use crate::documents::catalog::CollectionKind;
use crate::documents::history;
use crate::documents::id_pages::IdPages;
use crate::documents::users::rules::{self, merge_operator};
use crate::documents::{guard, json, metadata, query, read, Scope};
use crate::error::OpenCoreError;
use crate::proto::{UpdateDocumentRequest, UpdateDocumentResponse, UpdateResult};
use crate::store::{FindOptions, UpdateOptions};

const ATTEMPTS: usize = 5;
/// Documents read and updated per round.
const PAGE: usize = 1000;

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: UpdateDocumentRequest = ctx.request(true)?;
    let scope = ctx.scope(&request.collectionname).await?;
    scope.ensure_writable()?;
    if scope.collection == "audit" {
        return Err(OpenCoreError::AccessDenied);
    }
    let filter = query::parse_query(&request.query)?;
    read::refuse_password_probe(&scope, &[&request.query])?;
    if request.document.trim().is_empty() {
        return Err(OpenCoreError::BadRequest("document is mandatory".into()));
    }
    let mut update = json::parse_document("document", &request.document)?;
    guard::refuse_javascript(&update)?;
    if update.is_empty() || update.keys().any(|k| !k.starts_with('$')) {
        return Err(OpenCoreError::BadRequest(
            "Update document requires atomic operators".into(),
        ));
    }
    rules::sanitize_update(&scope, &filter, &mut update).await?;
    stamp(&scope, &mut update);
    let restricted = scope.restrict(filter, Right::Update);
    let (mut matched, mut modified) = (0u64, 0u64);
    let mut pages = IdPages::new(restricted.clone(), PAGE);
    while let Some(page_filter) = pages.next_filter() {
        let page = read_page(&scope, &page_filter, pages.page_size()).await?;
        pages.advance(&page);
        if page.is_empty() {
            continue;
        }
        let (m, n) = if scope.keeps_history() {
            update_tracked(&scope, &restricted, &update, page).await?
        } else {
            update_page(&scope, &restricted, &update, &page).await?
        };
        matched += m;
        modified += n;
    }
    let opresult = UpdateResult {
        acknowledged: true,
        matched_count: matched.min(i32::MAX as u64) as i32,
        modified_count: modified.min(i32::MAX as u64) as i32,
        upserted_count: 0,
        upserted_id: String::new(),
    };
    Ok(ctx.reply(&UpdateDocumentResponse {
        opresult: Some(opresult),
    }))
}

/// Adds the metadata operators: `$set` of `_modified*`, `$inc` of `_version`.
fn stamp(scope: &Scope, update: &mut Document) {
    if matches!(
        scope.kind,
        CollectionKind::Files | CollectionKind::Timeseries { .. }
    ) {
        return;
    }
    let mut stamps = Document::new();
    metadata::stamp_modified(&mut stamps, &scope.user, DateTime::now());
    merge_operator(update, "$set", stamps);
    merge_operator(update, "$inc", doc! {"_version": 1});
}

/// The next page of matches (whole documents when history needs them, else ids).
async fn read_page(
    scope: &Scope,
    filter: &Document,
    size: usize,
) -> Result<Vec<Document>, OpenCoreError> {
    let options = FindOptions {
        projection: (!scope.keeps_history()).then(|| doc! {"_id": 1}),
        sort: Some(IdPages::sort()),
        skip: 0,
        limit: size as u64,
    };
    Ok(scope
        .store()
        .find(&scope.collection, filter, &options)
        .await?)
}

/// One update of the page's documents (those that still match).
async fn update_page(
    scope: &Scope,
    restricted: &Document,
    update: &Document,
    page: &[Document],
) -> Result<(u64, u64), OpenCoreError> {
    let ids: Vec<Bson> = page.iter().filter_map(|d| d.get("_id").cloned()).collect();
    let filter = query::and([doc! {"_id": {"$in": ids}}, restricted.clone()]);
    let options = UpdateOptions {
        upsert: false,
        multi: true,
    };
    let outcome = scope
        .store()
        .update(&scope.collection, &filter, update, options)
        .await?;
    Ok((outcome.matched, outcome.modified))
}

/// Per document of a page: history record of the current version, then the update
/// conditional on that version (redone for documents another writer changed in between).
async fn update_tracked(
    scope: &Scope,
    restricted: &Document,
    update: &Document,
    mut pending: Vec<Document>,
) -> Result<(u64, u64), OpenCoreError> {
    let store = scope.store();
    let (mut matched, mut modified) = (0u64, 0u64);
    let mut first_error = None;
    for _ in 0..ATTEMPTS {
        if pending.is_empty() {
            break;
        }
        let records = pending
            .iter()
            .map(|d| history::record::snapshot(d, None))
            .collect();
        history::record::write(&scope.state, &scope.collection, records).await?;
        let attempts = pending.iter().map(|document| {
            let id = document.get("_id").cloned().unwrap_or(Bson::Null);
            let filter = query::and([
                doc! {"_id": id.clone()},
                metadata::version_filter(document),
                restricted.clone(),
            ]);
            async move {
                let outcome = store
                    .update(&scope.collection, &filter, update, UpdateOptions::default())
                    .await;
                (id, outcome)
            }
        });
        let mut raced = Vec::new();
        for (id, outcome) in join_all(attempts).await {
            match outcome {
                Ok(outcome) if outcome.matched > 0 => {
                    matched += outcome.matched;
                    modified += outcome.modified;
                }
                Ok(_) => raced.push(id),
                Err(err) => {
                    first_error.get_or_insert(err);
                }
            }
        }
        if raced.is_empty() {
            pending.clear();
            break;
        }
        let again = query::and([doc! {"_id": {"$in": raced}}, restricted.clone()]);
        pending = store
            .find(&scope.collection, &again, &FindOptions::default())
            .await?;
    }
    match first_error {
        Some(err) => Err(err.into()),
        None => Ok((matched, modified)),
    }
}
