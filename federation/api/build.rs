//! Compiles the admin, enrollment and trust-bundle protobuf files with protox (pure
//! Rust), so that building needs no `protoc` on the machine.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/isthmus/federation/v1/trust.proto",
        "proto/isthmus/federation/v1/admin.proto",
        "proto/isthmus/federation/v1/enroll.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
