use super::execute::guarded;
use super::*;
use crate::config::ServeConfig;
use crate::error::OpenCoreError;
use crate::proto::ErrorResponse;
use prost::Message;

async fn services() -> (Arc<Services>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = ServeConfig::for_tests(dir.path().to_path_buf());
    let store: crate::store::SharedStore =
        Arc::new(crate::store::embedded::EmbeddedStore::open(dir.path()).unwrap());
    let directory = crate::auth::Directory::new(
        store.clone(),
        b"secret",
        crate::auth::DirectorySettings {
            short_token_ttl: config.short_token_ttl,
            long_token_ttl: config.long_token_ttl,
            enable_guest: false,
            bcrypt_cost: 4,
        },
    );
    let bus: crate::bus::SharedBus = Arc::new(crate::bus::embedded::EmbeddedBus::new(
        crate::bus::embedded::EmbeddedLimits::default(),
    ));
    (Services::new(config, store, directory, bus), dir)
}

#[tokio::test]
async fn a_panicking_command_becomes_an_error_reply() {
    let (services, _dir) = services().await;
    let work = async {
        if services.config.bcrypt_cost > 0 {
            panic!("boom");
        }
        Err(OpenCoreError::Internal)
    };
    let completed = guarded(work, "r1", "signin".into(), &services).await;
    let reply = completed.reply.unwrap();
    assert_eq!(
        (reply.command.as_str(), reply.rid.as_str()),
        ("error", "r1")
    );
    let body = ErrorResponse::decode(reply.data.unwrap().value.as_slice()).unwrap();
    assert_eq!(
        body.message,
        "The handler for signin failed; the request was not completed"
    );
    assert_eq!(body.code, 1001);
    assert!(body.stack.is_empty());
}

#[tokio::test]
async fn a_failing_command_becomes_an_error_reply() {
    let (services, _dir) = services().await;
    let completed = guarded(
        async { Err(OpenCoreError::AccessDenied) },
        "r2",
        "x".into(),
        &services,
    )
    .await;
    let body =
        ErrorResponse::decode(completed.reply.unwrap().data.unwrap().value.as_slice()).unwrap();
    assert_eq!((body.message.as_str(), body.code), ("Access denied", 3005));
}
