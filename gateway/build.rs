//! Compiles the SPIFFE Workload API (X.509 part) with protox, so that building needs no
//! `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto = "proto/workload.proto";
    println!("cargo:rerun-if-changed={proto}");
    let descriptors = protox::compile([proto], ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(false)
        // JWT-SVIDs are not served: their methods answer Unimplemented.
        .generate_default_stubs(true)
        .compile_fds(descriptors)?;
    Ok(())
}
