//! `listcollections`: every collection name (ACLs apply to documents, not names, as in
//! the reference). `*_hist` only with `includehist`; `*.chunks` never; `system.*` only
//! `system.profile`, and only for admins. `entities` and `audit` are always listed
//! (guests never see `audit`). Sorted case-insensitively.

use bson::{doc, Document};

use super::{CommandContext, Outcome};
use crate::documents::{collections, output};
use crate::error::OpenCoreError;
use crate::proto::{ListCollectionsRequest, ListCollectionsResponse};

pub async fn run(ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: ListCollectionsRequest = ctx.request(false)?;
    let user = ctx.user()?.clone();
    let admin = user.is_admin();
    let infos = ctx.services.store.list_collections().await?;
    let mut entries: Vec<Document> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for info in infos {
        let name = info.name.as_str();
        let visible = if collections::is_system(name) {
            admin && name == "system.profile"
        } else {
            !name.ends_with(".chunks") && (request.includehist || !collections::is_history(name))
        };
        if !visible || (name == "audit" && user.is_guest()) {
            continue;
        }
        names.push(info.name.clone());
        entries.push(entry(&info.name, &info.kind, info.options));
    }
    for pseudo in ["entities", "audit"] {
        if !names.iter().any(|n| n == pseudo) && (pseudo != "audit" || !user.is_guest()) {
            entries.push(entry(pseudo, "collection", Document::new()));
        }
    }
    entries.sort_by_key(|e| e.get_str("name").unwrap_or_default().to_lowercase());
    Ok(ctx.reply(&ListCollectionsResponse {
        results: output::documents_to_json(&entries),
    }))
}

fn entry(name: &str, kind: &str, options: Document) -> Document {
    let mut entry =
        doc! {"name": name, "type": kind, "options": options, "info": {"readOnly": false}};
    if kind == "collection" {
        entry.insert("idIndex", doc! {"v": 2, "key": {"_id": 1}, "name": "_id_"});
    }
    entry
}
