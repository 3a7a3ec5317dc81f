//! Compiles proto/*.proto with protox (pure Rust, no system protoc) into prost/tonic code.
//! Also gives every `openiap.*` message serde derives for the REST API's JSON form
//! (field names exactly as in the .proto; `google.protobuf.Timestamp`, `Any` and
//! `bytes` fields through the helpers in `src/proto/json.rs`). The wire format is
//! unchanged: serde attributes do not touch prost's encoding.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/base.proto",
        "proto/querys.proto",
        "proto/queues.proto",
        "proto/watch.proto",
        "proto/workitems.proto",
        "proto/agent.proto",
        "proto/ace.proto",
        "proto/stripe.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    let mut config = tonic_prost_build::Config::new();
    // `prost::Name` gives every message its `type.googleapis.com/openiap.X` type URL.
    config.enable_type_names();
    config.type_name_domain(["."], "type.googleapis.com");
    config.bytes(["."]);
    config.type_attribute(
        ".openiap",
        "#[derive(serde::Serialize, serde::Deserialize)]",
    );
    // Absent JSON fields take the proto3 default, as on the wire.
    config.message_attribute(".openiap", "#[serde(default)]");
    for file in &descriptors.file {
        let package = file.package();
        for message in &file.message_type {
            json_fields(&mut config, &format!(".{package}"), message);
        }
    }
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}

/// Per field: the JSON name is the .proto name (prost renames `_id` to `id` and
/// `elapsedTime` to `elapsed_time`); well-known and bytes fields get a converter.
fn json_fields(
    config: &mut tonic_prost_build::Config,
    parent: &str,
    message: &prost_types_shim::DescriptorProto,
) {
    let path = format!("{parent}.{}", message.name());
    for field in &message.field {
        let field_path = format!("{path}.{}", field.name());
        config.field_attribute(
            &field_path,
            format!("#[serde(rename = \"{}\")]", field.name()),
        );
        // 3 = LABEL_REPEATED; 12 = TYPE_BYTES.
        let repeated = field.label == Some(3);
        let helper = match (field.type_name(), field.r#type) {
            (".google.protobuf.Timestamp", _) => Some("timestamp"),
            (".google.protobuf.Any", _) => Some("any"),
            (_, Some(12)) => Some("bytes"),
            _ => None,
        };
        if let Some(helper) = helper {
            let helper = if repeated {
                format!("repeated_{helper}")
            } else {
                helper.to_string()
            };
            config.field_attribute(
                &field_path,
                format!("#[serde(with = \"crate::proto::json::{helper}\")]"),
            );
        }
    }
    for nested in &message.nested_type {
        json_fields(config, &path, nested);
    }
}

/// The descriptor types protox returns, named through its own re-export.
mod prost_types_shim {
    pub use protox::prost_reflect::prost_types::DescriptorProto;
}
