//! Compiles proto/*.proto with protox (pure Rust, no system protoc) into prost/tonic code.

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
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .generate_default_stubs(true)
        .compile_fds_with_config(descriptors, config)?;
    Ok(())
}
