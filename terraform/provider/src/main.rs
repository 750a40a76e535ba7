//! `terraform-provider-isthmus`: Terraform's provider of an Isthmus federation, plugin
//! protocol 6 on the tree's own tonic and protox (no Go, no `protoc`). Terraform starts
//! it; it answers the go-plugin handshake ([`plugin`]), serves `tfplugin6.Provider`
//! (the library's [`terraform_provider_isthmus::provider`]) over mutual TLS on a private
//! unix socket, and speaks to the federation through the typed client
//! (`isthmus-federation-api`), connecting lazily.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use terraform_provider_isthmus::{plugin, proto};
use tokio::net::UnixListener;

/// Generated types of go-plugin's controller.
#[allow(
    missing_docs,
    unreachable_pub,
    dead_code,
    clippy::all,
    clippy::pedantic
)]
mod controller {
    tonic::include_proto!("plugin");
}

/// Terraform sends whole states and schemas: far above tonic's 4 MiB default.
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// go-plugin's `Shutdown`: Terraform calls it when it is done with the provider, and
/// waits two seconds for the process to go before it kills it.
struct Controller(tokio::sync::mpsc::Sender<()>);

#[tonic::async_trait]
impl controller::grpc_controller_server::GrpcController for Controller {
    async fn shutdown(
        &self,
        _: tonic::Request<controller::Empty>,
    ) -> Result<tonic::Response<controller::Empty>, tonic::Status> {
        let _ = self.0.try_send(());
        Ok(tonic::Response::new(controller::Empty {}))
    }
}

/// A directory only this user may enter, for the socket.
fn private_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir = base.join(format!(
            "isthmus-provider-{}-{nanos:x}-{attempt}",
            std::process::id()
        ));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other(
        "no fresh directory for the plugin socket",
    ))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    match serve().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-isthmus: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> Result<(), plugin::HandshakeError> {
    let host = plugin::Host::from_env(|k| std::env::var(k).ok())?;
    let tls = plugin::ServerTls::new(host.client_cert)?;
    let dir = private_dir().map_err(|source| plugin::HandshakeError::Socket {
        path: std::env::temp_dir(),
        source,
    })?;
    let socket = dir.join("plugin.sock");
    let listener =
        UnixListener::bind(&socket).map_err(|source| plugin::HandshakeError::Socket {
            path: socket.clone(),
            source,
        })?;
    // Ctrl-C goes to Terraform, which stops us through the protocol.
    tokio::spawn(async { while tokio::signal::ctrl_c().await.is_ok() {} });

    let (connections, incoming) = tokio::sync::mpsc::channel(16);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (acceptor, connections) = (acceptor.clone(), connections.clone());
            // Each handshake on its own: one stuck client does not hold the others.
            tokio::spawn(async move {
                match acceptor.accept(stream).await {
                    Ok(tls) => {
                        let _ = connections.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                    Err(e) => eprintln!("terraform-provider-isthmus: refused a connection: {e}"),
                }
            });
        }
    });

    let (stop, mut stopped) = tokio::sync::mpsc::channel(1);
    let provider = terraform_provider_isthmus::provider();
    let service = proto::provider_server::ProviderServer::new(provider)
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE);
    let served = tonic::transport::Server::builder()
        .add_service(service)
        .add_service(
            controller::grpc_controller_server::GrpcControllerServer::new(Controller(stop)),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::ReceiverStream::new(incoming),
            async move {
                stopped.recv().await;
            },
        );
    // The line goes out once the socket listens: Terraform dials as soon as it reads it.
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        let line = plugin::handshake_line(&socket, &tls.cert);
        let _ = out.write_all(line.as_bytes());
        let _ = out.flush();
    }
    let result = served.await;
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_dir(&dir);
    result.map_err(|e| plugin::HandshakeError::Tls(format!("serving: {e}")))
}
