//! Building and reading `Envelope`s: packing payloads into `Any`, reply naming,
//! error envelopes.

use prost::{Message, Name};
use prost_types::Any;

use crate::error::OpenCoreError;
use crate::proto::{Envelope, ErrorResponse};

/// Packs a message the way every official client does:
/// `type_url = "type.googleapis.com/openiap.<Message>"`.
pub fn pack<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// Decodes an envelope's payload. Dispatch never looks at `type_url` (Node sends it
/// empty for some commands); a missing `data` is an error only where the caller says so.
pub fn unpack<M: Message + Name + Default>(
    envelope: &Envelope,
    data_required: bool,
) -> Result<M, OpenCoreError> {
    match &envelope.data {
        Some(any) => {
            M::decode(any.value.as_slice()).map_err(|err| OpenCoreError::UndecodablePayload {
                command: envelope.command.clone(),
                type_name: M::NAME.to_string(),
                reason: err.to_string(),
            })
        }
        None if data_required => Err(OpenCoreError::MissingData(envelope.command.clone())),
        None => Ok(M::default()),
    }
}

/// The reply command for a request command. Exceptions the clients depend on:
/// `getelement` answers `getelement`, `ping` answers `pong`.
pub fn reply_command(command: &str) -> String {
    match command {
        "getelement" => "getelement".to_string(),
        "ping" => "pong".to_string(),
        other => format!("{other}reply"),
    }
}

/// A reply envelope: `rid` = request id, always with `data`.
pub fn reply<M: Message + Name>(request_command: &str, request_id: &str, message: &M) -> Envelope {
    Envelope {
        command: reply_command(request_command),
        rid: request_id.to_string(),
        data: Some(pack(message)),
        ..Default::default()
    }
}

/// An `error` envelope for a request. Never carries a stack trace.
pub fn error_reply(request_id: &str, error: &OpenCoreError) -> Envelope {
    let body = ErrorResponse {
        message: error.to_string(),
        code: error.code(),
        stack: String::new(),
    };
    Envelope {
        command: "error".to_string(),
        rid: request_id.to_string(),
        data: Some(pack(&body)),
        ..Default::default()
    }
}

/// A server-initiated envelope (ping, refreshtoken, events): empty `rid`.
pub fn push<M: Message + Name>(command: &str, message: &M) -> Envelope {
    Envelope {
        command: command.to_string(),
        data: Some(pack(message)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{GetElementResponse, SigninRequest};

    #[test]
    fn reply_names() {
        assert_eq!(reply_command("query"), "queryreply");
        assert_eq!(reply_command("getelement"), "getelement");
        assert_eq!(reply_command("ping"), "pong");
    }

    #[test]
    fn type_urls_match_the_clients() {
        let any = pack(&GetElementResponse { xpath: "x".into() });
        assert_eq!(
            any.type_url,
            "type.googleapis.com/openiap.GetElementResponse"
        );
    }

    #[test]
    fn missing_data() {
        let env = Envelope {
            command: "signin".into(),
            ..Default::default()
        };
        assert_eq!(
            unpack::<SigninRequest>(&env, true),
            Err(OpenCoreError::MissingData("signin".into()))
        );
        assert_eq!(
            unpack::<SigninRequest>(&env, false),
            Ok(SigninRequest::default())
        );
        let env = Envelope {
            command: "signin".into(),
            data: Some(Any {
                type_url: String::new(),
                value: vec![0xff, 0xff, 0xff],
            }),
            ..Default::default()
        };
        assert!(matches!(
            unpack::<SigninRequest>(&env, true),
            Err(OpenCoreError::UndecodablePayload { .. })
        ));
    }

    #[test]
    fn errors_have_data_and_no_stack() {
        let env = error_reply("abc", &OpenCoreError::UnknownCommand("nope".into()));
        assert_eq!(env.command, "error");
        assert_eq!(env.rid, "abc");
        let body = ErrorResponse::decode(env.data.unwrap().value.as_slice()).unwrap();
        assert_eq!(body.message, "Unknown command nope");
        assert!(body.stack.is_empty());
        assert_eq!(body.code, 2001);
    }
}
