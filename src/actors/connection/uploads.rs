//! Upload streams on a connection: the routes from `rid` to each upload's stream actor
//! (see `connections::upload`), and the pause that keeps a fast client from filling
//! memory while the store writes its file.
//!
//! | what | bound | effect |
//! |---|---|---|
//! | uploads per connection | `MAX_UPLOADS_PER_CONNECTION` | `upload` answered with error 2082 |
//! | bytes routed, not yet written, per upload | `PAUSE_ABOVE` (8 MiB) | the connection stops reading its transport until `RESUME_BELOW` (2 MiB) remain |
//! | a pause | `--upload-idle-timeout` | the upload is dropped (its actor removes what it wrote); reading resumes |

use std::collections::HashMap;

use actix::prelude::*;
use bytes::Bytes;
use prost::Message as _;

use super::ConnectionActor;
use crate::connections::upload::MAX_UPLOADS_PER_CONNECTION;
use crate::connections::{upload_channel, UploadInbox, UploadPiece, UploadRoute};
use crate::proto::{Envelope, Stream};

/// The routes of this connection's uploads, by upload id (the `upload` envelope's id).
#[derive(Default)]
pub struct Uploads {
    routes: HashMap<String, UploadRoute>,
}

impl Uploads {
    /// Opens a route for a new upload; `None` at the per-connection cap, for an id
    /// already streaming, or an empty id (the command then answers the error). Routes
    /// whose upload already ended are pruned first.
    pub fn open(&mut self, id: &str) -> Option<UploadInbox> {
        self.routes.retain(|_, route| !route.is_closed());
        if id.is_empty()
            || self.routes.len() >= MAX_UPLOADS_PER_CONNECTION
            || self.routes.contains_key(id)
        {
            return None;
        }
        let (route, inbox) = upload_channel();
        self.routes.insert(id.to_string(), route);
        Some(inbox)
    }

    /// Whether the upload's stream is still being routed.
    pub fn is_open(&self, id: &str) -> bool {
        self.routes.get(id).is_some_and(|route| !route.is_closed())
    }

    pub fn close(&mut self, id: &str) {
        self.routes.remove(id);
    }

    pub fn clear(&mut self) {
        self.routes.clear();
    }
}

/// The piece a stream envelope carries; `None` for other commands. Node sends `stream`
/// with an empty type URL and `endstream` without `data`: only `command` counts.
fn piece_of(envelope: &Envelope) -> Option<UploadPiece> {
    Some(match envelope.command.as_str() {
        "beginstream" => UploadPiece::Begin,
        "endstream" => UploadPiece::End,
        "stream" => {
            let value = envelope
                .data
                .as_ref()
                .map(|any| any.value.as_slice())
                .unwrap_or_default();
            // An undecodable chunk is empty data rather than an error: stream
            // envelopes never get replies, and the size check still sees every byte.
            let data = Stream::decode(value)
                .map(|stream| stream.data)
                .unwrap_or_else(|_| Bytes::new());
            UploadPiece::Data(data)
        }
        _ => return None,
    })
}

impl ConnectionActor {
    /// Routes an envelope carrying a `rid` to its upload, if it is a stream envelope of
    /// one; anything else with a `rid` (or for an unknown upload) is ignored, never
    /// answered. Pauses reading when the upload has too much waiting.
    pub(super) fn route_upload_piece(&mut self, envelope: &Envelope, ctx: &mut Context<Self>) {
        let Some(route) = self.uploads.routes.get(&envelope.rid) else {
            return;
        };
        let Some(piece) = piece_of(envelope) else {
            return;
        };
        let end = matches!(piece, UploadPiece::End);
        if !route.send(piece) || end {
            // The upload ended (or was refused): later pieces for it are ignored.
            self.uploads.close(&envelope.rid);
            return;
        }
        if route.should_pause() {
            self.pause_for_upload(envelope.rid.clone(), ctx);
        }
    }

    /// Stops reading anything (`ctx.wait`) until the upload's stream actor drained its
    /// backlog. A stream actor that makes no progress for the idle timeout loses its
    /// route, which ends the upload and resumes the connection.
    fn pause_for_upload(&mut self, id: String, ctx: &mut Context<Self>) {
        let Some(route) = self.uploads.routes.get(&id) else {
            return;
        };
        let idle = self.services.config.work.upload_idle_timeout;
        let drained = route.drained();
        tracing::trace!(connection = self.id, upload = %id, "pausing reads until the upload drains");
        crate::services::Counters::bump(&self.services.counters.upload_pauses);
        ctx.wait(
            async move { tokio::time::timeout(idle, drained).await.is_ok() }
                .into_actor(self)
                .map(move |drained, actor, _ctx| {
                    if !drained {
                        tracing::info!(connection = actor.id, upload = %id, "upload made no progress while the connection waited; dropping it");
                        actor.uploads.close(&id);
                    }
                }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_capped_unique_and_pruned_when_their_upload_ends() {
        let mut uploads = Uploads::default();
        assert!(uploads.open("").is_none(), "an upload needs an id");
        let mut inboxes: Vec<UploadInbox> = (0..MAX_UPLOADS_PER_CONNECTION)
            .map(|n| uploads.open(&n.to_string()).expect("under the cap"))
            .collect();
        assert!(uploads.open("one more").is_none(), "at the cap");
        assert!(uploads.is_open("0"));
        // An upload whose actor let go of its inbox frees its slot.
        drop(inboxes.remove(0));
        assert!(!uploads.is_open("0"));
        assert!(uploads.open("one more").is_some());
        assert!(uploads.open("1").is_none(), "id already streaming");
        uploads.close("1");
        assert!(!uploads.is_open("1"));
    }

    #[test]
    fn only_stream_commands_are_pieces() {
        let stream = Envelope {
            command: "stream".into(),
            data: Some(prost_types::Any {
                type_url: String::new(),
                value: Stream {
                    data: Bytes::from_static(b"abc"),
                }
                .encode_to_vec(),
            }),
            ..Default::default()
        };
        assert!(matches!(piece_of(&stream), Some(UploadPiece::Data(d)) if d.as_ref() == b"abc"));
        let end = Envelope {
            command: "endstream".into(),
            ..Default::default()
        };
        assert!(matches!(piece_of(&end), Some(UploadPiece::End)));
        let pong = Envelope {
            command: "pong".into(),
            ..Default::default()
        };
        assert!(piece_of(&pong).is_none());
    }
}
