//! Compiles Terraform's plugin protocol (version 6.10, from the Terraform 1.15 release)
//! and go-plugin's controller service with protox, so that building needs no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/tfplugin6.proto",
        "proto/plugin/grpc_controller.proto",
    ];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        // Terraform calls what a provider declares; every other method answers
        // Unimplemented, which it tolerates.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
