//! Compiles the node-to-node Raft protocol with protox (pure Rust), so that building
//! needs no `protoc` on the machine. The admin protocol is the API crate's.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/isthmus/federation/v1/raft.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
