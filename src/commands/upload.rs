//! `upload`: stores the file whose `beginstream`/`stream`…/`endstream` envelopes
//! follow this request (rid = its id). The connection already routes them into the
//! inbox handed over here; this command checks the caller, builds the `.files`
//! metadata (§10.1) and starts the upload's stream actor, which writes the chunks as
//! they arrive and answers `uploadreply` after `endstream` (the reply is deferred).
//! Needs a streaming connection.

use std::sync::Arc;

use actix::Actor;
use bson::{Bson, DateTime, Document};

use super::{CommandContext, Outcome};
use crate::acl::{ace, rights};
use crate::auth::builtin::{FILESTORE_ADMINS_ROLE_ID, FILESTORE_USERS_ROLE_ID, GUEST_USER_ID};
use crate::auth::ResolvedUser;
use crate::connections::{ChildKind, StopChild};
use crate::documents::{json, metadata};
use crate::error::OpenCoreError;
use crate::files::upload::{UploadActor, UploadJob};
use crate::files::{NewFile, DEFAULT_BUCKET};
use crate::proto::UploadRequest;

pub async fn run(mut ctx: CommandContext) -> Result<Outcome, OpenCoreError> {
    let request: UploadRequest = ctx.request(true)?;
    let connection = ctx.connection()?.clone();
    let user = ctx.user()?.clone();
    if ctx.envelope.id.is_empty() {
        return Err(OpenCoreError::BadRequest(
            "upload needs an envelope id: its stream envelopes refer to it".into(),
        ));
    }
    let Some(inbox) = ctx.upload.take() else {
        return Err(OpenCoreError::TooManyChildren {
            kind: ChildKind::Upload.plural(),
            limit: crate::connections::upload::MAX_UPLOADS_PER_CONNECTION,
        });
    };
    let work = &ctx.services.config.work;
    if user.id == GUEST_USER_ID && !work.enable_guest_file_upload {
        return Err(OpenCoreError::GuestUpload);
    }
    let client_metadata = if request.metadata.trim().is_empty() {
        Document::new()
    } else {
        json::parse_document("metadata", &request.metadata)?
    };
    let file = NewFile {
        metadata: file_metadata(client_metadata, &request.filename, &user, DateTime::now()),
        filename: request.filename,
        content_type: request.mimetype,
    };
    let id = ctx.envelope.id.clone();
    // Started before it is attached: it drains the inbox at once, so a connection
    // paused on this upload's backlog resumes and can answer the attach.
    let actor = UploadActor::new(UploadJob {
        id: id.clone(),
        inbox,
        writer: ctx.services.files.writer(DEFAULT_BUCKET),
        file,
        connection: connection.clone(),
        idle_timeout: work.upload_idle_timeout,
    })
    .start();
    if let Err(err) = connection
        .attach(ChildKind::Upload, id, actor.clone().recipient())
        .await
    {
        actor.do_send(StopChild);
        return Err(err);
    }
    Ok(ctx.deferred())
}

/// The `.files` metadata of §10.1: the client's fields, `name` defaulting to the file
/// name, the caller as creator and modifier, and an ACL giving the caller and
/// `filestore admins` full control and `filestore users` read (on top of any ACEs the
/// client sent).
fn file_metadata(
    mut metadata: Document,
    filename: &str,
    user: &Arc<ResolvedUser>,
    now: DateTime,
) -> Document {
    let mut acl = ace::parse(metadata.get("_acl"));
    ace::ensure(
        &mut acl,
        &user.id,
        metadata::user_name(user),
        rights::FULL_CONTROL,
    );
    ace::ensure(
        &mut acl,
        FILESTORE_ADMINS_ROLE_ID,
        "filestore admins",
        rights::FULL_CONTROL,
    );
    ace::ensure(
        &mut acl,
        FILESTORE_USERS_ROLE_ID,
        "filestore users",
        rights::READ,
    );
    metadata.insert("_acl", ace::to_bson(&acl));
    let unnamed = !matches!(metadata.get("name"), Some(Bson::String(name)) if !name.is_empty());
    if unnamed {
        metadata.insert("name", filename);
    }
    metadata::stamp_created(&mut metadata, user, now);
    metadata::stamp_modified(&mut metadata, user, now);
    metadata
}

#[cfg(test)]
mod tests {
    use super::*;
    use bson::doc;

    fn user() -> Arc<ResolvedUser> {
        Arc::new(ResolvedUser {
            id: "u1".into(),
            name: "Ann".into(),
            username: "ann".into(),
            email: String::new(),
            disabled: false,
            roles: Vec::new(),
            created: None,
            token_generation: 0,
        })
    }

    #[test]
    fn metadata_defaults() {
        let m = file_metadata(
            doc! {"kind": "report", "_acl": [{"_id": "friend", "name": "friend", "rights": 2}]},
            "a.txt",
            &user(),
            DateTime::now(),
        );
        assert_eq!(m.get_str("name").unwrap(), "a.txt");
        assert_eq!(m.get_str("kind").unwrap(), "report");
        assert_eq!(m.get_str("_createdbyid").unwrap(), "u1");
        assert_eq!(m.get_str("_modifiedby").unwrap(), "Ann");
        let acl = ace::parse(m.get("_acl"));
        let rights_of = |id: &str| acl.iter().find(|a| a.id == id).map(|a| a.rights);
        assert_eq!(rights_of("u1"), Some(rights::FULL_CONTROL));
        assert_eq!(
            rights_of(FILESTORE_ADMINS_ROLE_ID),
            Some(rights::FULL_CONTROL)
        );
        assert_eq!(rights_of(FILESTORE_USERS_ROLE_ID), Some(rights::READ));
        assert_eq!(rights_of("friend"), Some(rights::READ));
        let named = file_metadata(doc! {"name": "Mine"}, "a.txt", &user(), DateTime::now());
        assert_eq!(named.get_str("name").unwrap(), "Mine");
    }
}
