//! The tunnel benchmark: two Isthmus gateways against three peer TLS-over-TCP two-hop
//! tunnels with mutual TLS (nginx stream module, stunnel, haproxy), same machine, same
//! run, interleaved. Run with `cargo bench -p isthmus-gateway --bench tunnel`; results and
//! method in `docs/benchmarks.md`.
//!
//! The gateways, the echo/sink server and the peers run as separate processes (this
//! binary re-executed with `--as-gateway` / `--as-echo`), so that each one's memory can
//! be read and none shares a runtime with the load generator.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ROUNDS: usize = 3;
const BULK_BYTES: u64 = 256 << 20;
/// Connections of the parallel bulk figure; each carries `BULK_BYTES / PARALLEL`.
const PARALLEL: u64 = 8;
const PINGS: usize = 5000;
const CONN_SECONDS: f64 = 2.0;
const CONN_CLIENTS: usize = 16;
const IDLE_CONNECTIONS: usize = 10_000;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("--as-gateway") => as_gateway(Path::new(&args[1])),
        Some("--as-echo") => as_echo(args.get(1).map_or("127.0.0.1", String::as_str)),
        Some(filter) if !filter.starts_with('-') => orchestrate(Some(filter)),
        _ => orchestrate(None),
    }
}

// ---------------------------------------------------------------- child processes

/// A gateway from `dir/config.json`; prints its addresses, exits when stdin closes.
fn as_gateway(config: &Path) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match std::env::var("ISTHMUS_BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
    {
        Some(1) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap(),
        Some(n) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build()
            .unwrap(),
        None => tokio::runtime::Runtime::new().unwrap(),
    };
    runtime.block_on(async {
        let config =
            isthmus_config::load::<isthmus_gateway::config::GatewayConfigFile>(config).unwrap();
        let base = Path::new("/");
        let identity = isthmus_gateway::identity::GatewayIdentity::load(
            config.tls.as_ref().expect("the bench writes [tls]"),
            base,
            &config.cluster,
        )
        .unwrap();
        let gateway = isthmus_gateway::Gateway::start_with_identity(
            config,
            identity,
            std::path::Path::new("."),
        )
        .await
        .unwrap();
        let mut line = format!("READY {}", gateway.quic_addr());
        for (import, addr) in &gateway.addresses().imports {
            line.push_str(&format!(" {}={addr}", import.name));
        }
        println!("{line}");
        wait_for_stdin_close().await;
        gateway.drain(Duration::ZERO).await;
    });
}

/// An echo server and a sink (reads the announced number of bytes, answers one byte);
/// exits when stdin closes. The sink needs no half-close, which not every peer passes on.
fn as_echo(ip: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let echo = TcpListener::bind((ip, 0)).await.unwrap();
        let sink = TcpListener::bind((ip, 0)).await.unwrap();
        println!(
            "READY echo={} sink={}",
            echo.local_addr().unwrap(),
            sink.local_addr().unwrap()
        );
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let _ = tcp.set_nodelay(true);
                    let mut buf = vec![0u8; 4096];
                    loop {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if tcp.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        tokio::spawn(async move {
            loop {
                let (mut tcp, _) = sink.accept().await.unwrap();
                tokio::spawn(async move {
                    let Ok(mut left) = tcp.read_u64().await else {
                        return;
                    };
                    let mut buf = vec![0u8; 256 * 1024];
                    while left > 0 {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => left = left.saturating_sub(n as u64),
                        }
                    }
                    let _ = tcp.write_all(b"K").await;
                });
            }
        });
        wait_for_stdin_close().await;
    });
}

async fn wait_for_stdin_close() {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 64];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            return;
        }
    }
}

// ---------------------------------------------------------------- orchestration

struct Proc {
    child: Child,
    name: String,
}

impl Proc {
    fn rss_kib(&self) -> u64 {
        rss_kib(self.child.id())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of `pid` and its children (nginx workers), in KiB.
fn rss_kib(pid: u32) -> u64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let children: u64 = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .map(rss_kib)
        .sum();
    own + children
}

/// CPU time (user + system) of `pid` and its children (nginx and haproxy workers), in
/// clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    // Fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime are the 14th and 15th fields of the whole line.
    let own = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
        })
        .unwrap_or(0);
    let children: u64 = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.parse().ok())
        .map(cpu_ticks)
        .sum();
    own + children
}

/// Clock ticks per second (`getconf CLK_TCK`).
fn ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// `program` to run in network namespace `ns` (`ip netns exec` execs it: the pid is
/// the program's), or here.
fn command(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

fn spawn_self(ns: Option<&str>, name: &str, args: &[&str]) -> (Proc, String) {
    let exe = std::env::current_exe().unwrap();
    let mut child = command(ns, &exe.to_string_lossy())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("READY"), "{name} did not start: {line:?}");
    (
        Proc {
            child,
            name: name.into(),
        },
        line.trim().to_owned(),
    )
}

fn spawn_peer(
    ns: Option<&str>,
    name: &str,
    program: &str,
    args: &[&str],
    ports: &[SocketAddr],
) -> Proc {
    let child = command(ns, program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program} (apt-get install nginx-light libnginx-mod-stream stunnel4 haproxy): {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    for port in ports {
        while std::net::TcpStream::connect(port).is_err() {
            assert!(
                Instant::now() < deadline,
                "{name} does not listen on {port}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    Proc {
        child,
        name: name.into(),
    }
}

fn field(line: &str, key: &str) -> SocketAddr {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {line}"))
        .parse()
        .unwrap()
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Where the two hops run. On loopback (the default) everything is in this namespace on
/// 127.0.0.1. With `ISTHMUS_BENCH_VETH=1` (root needed), on a path of MTU 1,500: hop 1
/// in namespace A, hop 2 and the servers in namespace B, A and B joined by a veth pair of
/// MTU 1,500, and the load generator here reaching A over a second veth pair (and B
/// through A, for the direct path). The namespaces are made at start and removed at the
/// end.
struct Net {
    veth: bool,
}

const NS_A: &str = "isthmus-bench-a";
const NS_B: &str = "isthmus-bench-b";

impl Net {
    fn new() -> Self {
        let veth = std::env::var_os("ISTHMUS_BENCH_VETH").is_some();
        let net = Self { veth };
        if veth {
            net.teardown();
            for step in [
                "netns add isthmus-bench-a",
                "netns add isthmus-bench-b",
                "link add ib-r type veth peer name ib-a0 netns isthmus-bench-a",
                "link add ib-a1 netns isthmus-bench-a type veth peer name ib-b netns isthmus-bench-b",
                "addr add 10.201.1.1/24 dev ib-r",
                "link set ib-r up",
                "route add 10.201.2.0/24 via 10.201.1.2",
                "-n isthmus-bench-a addr add 10.201.1.2/24 dev ib-a0",
                "-n isthmus-bench-a addr add 10.201.2.1/24 dev ib-a1",
                "-n isthmus-bench-a link set ib-a1 mtu 1500",
                "-n isthmus-bench-a link set ib-a0 up",
                "-n isthmus-bench-a link set ib-a1 up",
                "-n isthmus-bench-a link set lo up",
                "-n isthmus-bench-b addr add 10.201.2.2/24 dev ib-b",
                "-n isthmus-bench-b link set ib-b mtu 1500",
                "-n isthmus-bench-b link set ib-b up",
                "-n isthmus-bench-b link set lo up",
                "-n isthmus-bench-b route add 10.201.1.0/24 via 10.201.2.1",
            ] {
                let status = Command::new("ip").args(step.split(' ')).status().unwrap();
                assert!(
                    status.success(),
                    "ip {step} failed (ISTHMUS_BENCH_VETH needs root)"
                );
            }
            let status = Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    NS_A,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                ])
                .status()
                .unwrap();
            assert!(status.success(), "forwarding in {NS_A}");
        }
        net
    }

    /// Hop 1's namespace, hop 2's (and the servers').
    fn a(&self) -> Option<&'static str> {
        self.veth.then_some(NS_A)
    }

    fn b(&self) -> Option<&'static str> {
        self.veth.then_some(NS_B)
    }

    /// Where hop 1 listens for the load generator.
    fn hop1_ip(&self) -> &'static str {
        if self.veth { "10.201.1.2" } else { "127.0.0.1" }
    }

    /// Hop 1's side and hop 2's side of the path between the hops.
    fn between(&self) -> (&'static str, &'static str) {
        if self.veth {
            ("10.201.2.1", "10.201.2.2")
        } else {
            ("127.0.0.1", "127.0.0.1")
        }
    }

    /// A port on `ip` for a listener (nothing else in the benchmark picks ports there).
    fn port(&self, ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), free_port().port())
    }

    fn teardown(&self) {
        // The kernel frees a deleted namespace's devices lazily: the root end of the
        // pair could outlive it and block the next run.
        let _ = Command::new("ip")
            .args(["link", "del", "ib-r"])
            .stderr(Stdio::null())
            .status();
        for ns in [NS_A, NS_B] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if self.veth {
            self.teardown();
        }
    }
}

struct Files {
    dir: PathBuf,
}

impl Files {
    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let path = self.path(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

fn pki(files: &Files) {
    let day = Duration::from_secs(86_400);
    let pki = isthmus_testkit::TestPki::new("mesh.example", &["east", "west"]).unwrap();
    files.write("root.pem", &pki.root.cert_chain_pem());
    for cluster in ["east", "west"] {
        let id = format!("spiffe://mesh.example/cluster/{cluster}/gateway/gw");
        let dns = format!("{cluster}.gateway");
        let ca = pki.intermediate(cluster).unwrap();
        let leaf = isthmus_testkit::pki::issue(ca, &id, &[&dns], day).unwrap();
        files.write(&format!("{cluster}-chain.pem"), &leaf.chain_pem());
        files.write(&format!("{cluster}-key.pem"), &leaf.key_pem());
    }
}

/// One way from the load generator to the echo and sink servers, and the processes of
/// its two hops (none for direct).
struct Path2 {
    name: &'static str,
    echo: SocketAddr,
    sink: SocketAddr,
    pids: Vec<u32>,
}

impl Path2 {
    fn cpu_ticks(&self) -> u64 {
        self.pids.iter().map(|p| cpu_ticks(*p)).sum()
    }
}

fn orchestrate(filter: Option<&str>) {
    let dir = tempfile::tempdir().unwrap();
    let files = Files {
        dir: dir.path().to_path_buf(),
    };
    pki(&files);
    let net = Net::new();
    let (hop1_ip, (east_ip, west_ip)) = (net.hop1_ip(), net.between());
    let echo_ip = if net.veth { "0.0.0.0" } else { "127.0.0.1" };
    let (echo_proc, line) = spawn_self(net.b(), "echo", &["--as-echo", echo_ip]);
    let (echo_bound, sink_bound) = (field(&line, "echo"), field(&line, "sink"));
    // Hop 2 reaches the servers on its own loopback; the direct path crosses the link.
    let at = |ip: &str, a: SocketAddr| SocketAddr::new(ip.parse().unwrap(), a.port());
    let (echo, sink) = (at("127.0.0.1", echo_bound), at("127.0.0.1", sink_bound));

    // Isthmus: east imports echo and sink from west.
    let gateway_json = |cluster: &str, peer: &str, peer_addr: &str, extra: &str| {
        let quic_ip = if cluster == "east" { east_ip } else { west_ip };
        format!(
            r#"{{"cluster": "{cluster}",
 "tls": {{"bundle": "{root}", "cert": "{chain}", "key": "{key}"}},
 "listen": {{"quic": "{quic_ip}:0"}},
 "peers": [{{"cluster": "{peer}", "address": "{peer_addr}"}}],
 {extra}}}"#,
            root = files.path("root.pem"),
            chain = files.path(&format!("{cluster}-chain.pem")),
            key = files.path(&format!("{cluster}-key.pem")),
        )
    };
    let west_cfg = files.write(
        "west.json",
        &gateway_json("west", "east", "127.0.0.1:9", &format!(
            r#""exports": [{{"namespace": "bench", "name": "echo", "ports": [{{"port": 7, "endpoints": ["{echo}"]}}]}},
                {{"namespace": "bench", "name": "sink", "ports": [{{"port": 9, "endpoints": ["{sink}"]}}]}}]"#
        )),
    );
    let (west, line) = spawn_self(net.b(), "isthmus west", &["--as-gateway", &west_cfg]);
    let west_quic = line.split_whitespace().nth(1).unwrap().to_owned();
    let east_cfg = files.write(
        "east.json",
        &gateway_json("east", "west", &west_quic,
            &format!(r#""imports": [{{"namespace": "bench", "name": "echo", "cluster": "west", "port": 7, "listen": "{hop1_ip}:0"}},
                {{"namespace": "bench", "name": "sink", "cluster": "west", "port": 9, "listen": "{hop1_ip}:0"}}]"#)),
    );
    let (east, line) = spawn_self(net.a(), "isthmus east", &["--as-gateway", &east_cfg]);
    let isthmus = Path2 {
        name: "isthmus",
        echo: field(&line, "echo"),
        sink: field(&line, "sink"),
        pids: vec![east.child.id(), west.child.id()],
    };

    // nginx: hop 1 takes plain TCP and originates mutual TLS to hop 2, which forwards.
    let (n1e, n1s) = (net.port(hop1_ip), net.port(hop1_ip));
    let (n2e, n2s) = (net.port(west_ip), net.port(west_ip));
    let nginx_conf = |name: &str, servers: String| {
        files.write(
            &format!("{name}.conf"),
            &format!(
                "load_module /usr/lib/nginx/modules/ngx_stream_module.so;\nuser root;\ndaemon off;\nworker_processes auto;\n\
                 pid {pid};\nerror_log {log} warn;\nworker_rlimit_nofile 20000;\nevents {{ worker_connections 9000; }}\nstream {{\n{servers}}}\n",
                pid = files.path(&format!("{name}.pid")),
                log = files.path(&format!("{name}.log")),
            ),
        )
    };
    let hop1 = |listen: SocketAddr, to: SocketAddr| {
        format!(
            "server {{ listen {listen}; proxy_pass {to}; proxy_ssl on; proxy_ssl_protocols TLSv1.3;\n\
             proxy_ssl_certificate {chain}; proxy_ssl_certificate_key {key};\n\
             proxy_ssl_trusted_certificate {root}; proxy_ssl_verify on; proxy_ssl_verify_depth 3; proxy_ssl_name west.gateway; }}\n",
            chain = files.path("east-chain.pem"),
            key = files.path("east-key.pem"),
            root = files.path("root.pem"),
        )
    };
    let hop2 = |listen: SocketAddr, to: SocketAddr| {
        format!(
            "server {{ listen {listen} ssl; proxy_pass {to}; ssl_protocols TLSv1.3;\n\
             ssl_certificate {chain}; ssl_certificate_key {key};\n\
             ssl_client_certificate {root}; ssl_verify_client on; ssl_verify_depth 3; }}\n",
            chain = files.path("west-chain.pem"),
            key = files.path("west-key.pem"),
            root = files.path("root.pem"),
        )
    };
    let n2_conf = nginx_conf("nginx-hop2", hop2(n2e, echo) + &hop2(n2s, sink));
    let n1_conf = nginx_conf("nginx-hop1", hop1(n1e, n2e) + &hop1(n1s, n2s));
    let nginx2 = spawn_peer(
        net.b(),
        "nginx hop2",
        "nginx",
        &["-c", &n2_conf, "-p", &files.path("")],
        &[n2e, n2s],
    );
    let nginx1 = spawn_peer(
        net.a(),
        "nginx hop1",
        "nginx",
        &["-c", &n1_conf, "-p", &files.path("")],
        &[n1e, n1s],
    );
    let nginx = Path2 {
        name: "nginx",
        echo: n1e,
        sink: n1s,
        pids: vec![nginx1.child.id(), nginx2.child.id()],
    };

    // stunnel: a client-mode instance and a server-mode instance.
    let (s1e, s1s) = (net.port(hop1_ip), net.port(hop1_ip));
    let (s2e, s2s) = (net.port(west_ip), net.port(west_ip));
    let st_client = files.write(
        "stunnel-hop1.conf",
        &format!(
            "foreground = yes\npid =\nsslVersion = TLSv1.3\n[echo]\nclient = yes\naccept = {s1e}\nconnect = {s2e}\n\
             cert = {chain}\nkey = {key}\nCAfile = {root}\nverifyChain = yes\ncheckHost = west.gateway\n\
             [sink]\nclient = yes\naccept = {s1s}\nconnect = {s2s}\ncert = {chain}\nkey = {key}\nCAfile = {root}\nverifyChain = yes\ncheckHost = west.gateway\n",
            chain = files.path("east-chain.pem"), key = files.path("east-key.pem"), root = files.path("root.pem"),
        ),
    );
    let st_server = files.write(
        "stunnel-hop2.conf",
        &format!(
            "foreground = yes\npid =\nsslVersion = TLSv1.3\n[echo]\naccept = {s2e}\nconnect = {echo}\n\
             cert = {chain}\nkey = {key}\nCAfile = {root}\nverifyChain = yes\nrequireCert = yes\n\
             [sink]\naccept = {s2s}\nconnect = {sink}\ncert = {chain}\nkey = {key}\nCAfile = {root}\nverifyChain = yes\nrequireCert = yes\n",
            chain = files.path("west-chain.pem"), key = files.path("west-key.pem"), root = files.path("root.pem"),
        ),
    );
    let stunnel2 = spawn_peer(
        net.b(),
        "stunnel hop2",
        "stunnel",
        &[&st_server],
        &[s2e, s2s],
    );
    let stunnel1 = spawn_peer(
        net.a(),
        "stunnel hop1",
        "stunnel",
        &[&st_client],
        &[s1e, s1s],
    );
    let stunnel = Path2 {
        name: "stunnel",
        echo: s1e,
        sink: s1s,
        pids: vec![stunnel1.child.id(), stunnel2.child.id()],
    };

    // haproxy: hop 1 a TCP frontend whose server speaks mutual TLS, hop 2 a TLS bind
    // that requires a client certificate. haproxy wants the chain and key in one file.
    for cluster in ["east", "west"] {
        let chain = std::fs::read_to_string(files.path(&format!("{cluster}-chain.pem"))).unwrap();
        let key = std::fs::read_to_string(files.path(&format!("{cluster}-key.pem"))).unwrap();
        files.write(&format!("{cluster}-combined.pem"), &(chain + &key));
    }
    let (h1e, h1s) = (net.port(hop1_ip), net.port(hop1_ip));
    let (h2e, h2s) = (net.port(west_ip), net.port(west_ip));
    let haproxy_conf = |name: &str, proxies: String| {
        files.write(
            &format!("{name}.cfg"),
            &format!(
                "global\n  nbthread 2\n  maxconn 9000\n  ssl-default-bind-options ssl-min-ver TLSv1.3\n  ssl-default-server-options ssl-min-ver TLSv1.3\n\
                 defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 1h\n  timeout server 1h\n{proxies}"
            ),
        )
    };
    let h_hop1 = |name: &str, listen: SocketAddr, to: SocketAddr| {
        format!(
            "listen {name}\n  bind {listen}\n  server west {to} ssl crt {crt} ca-file {root} verify required verifyhost west.gateway\n",
            crt = files.path("east-combined.pem"),
            root = files.path("root.pem"),
        )
    };
    let h_hop2 = |name: &str, listen: SocketAddr, to: SocketAddr| {
        format!(
            "listen {name}\n  bind {listen} ssl crt {crt} ca-file {root} verify required\n  server app {to}\n",
            crt = files.path("west-combined.pem"),
            root = files.path("root.pem"),
        )
    };
    let h2_conf = haproxy_conf(
        "haproxy-hop2",
        h_hop2("echo", h2e, echo) + &h_hop2("sink", h2s, sink),
    );
    let h1_conf = haproxy_conf(
        "haproxy-hop1",
        h_hop1("echo", h1e, h2e) + &h_hop1("sink", h1s, h2s),
    );
    let haproxy2 = spawn_peer(
        net.b(),
        "haproxy hop2",
        "haproxy",
        &["-db", "-f", &h2_conf],
        &[h2e, h2s],
    );
    let haproxy1 = spawn_peer(
        net.a(),
        "haproxy hop1",
        "haproxy",
        &["-db", "-f", &h1_conf],
        &[h1e, h1s],
    );
    let haproxy = Path2 {
        name: "haproxy",
        echo: h1e,
        sink: h1s,
        pids: vec![haproxy1.child.id(), haproxy2.child.id()],
    };
    let direct = Path2 {
        name: "direct",
        echo: at(west_ip, echo_bound),
        sink: at(west_ip, sink_bound),
        pids: vec![],
    };

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let paths = [&direct, &isthmus, &nginx, &stunnel, &haproxy];
    // The best of the peers (paths[2..]) by `better`.
    let best_peer = |values: &[f64], better: fn(f64, f64) -> f64| {
        values[2..].iter().copied().reduce(better).unwrap()
    };
    let tick = ticks_per_second();
    // ISTHMUS_BENCH_PROFILE=1: only the Isthmus path, many times, for a profiler to watch.
    if std::env::var_os("ISTHMUS_BENCH_PROFILE").is_some() {
        for _ in 0..15 {
            println!(
                "isthmus bulk {:.1} MiB/s",
                runtime.block_on(bulk(isthmus.sink, 1))
            );
        }
        return;
    }
    let wants = |what: &str| filter.is_none_or(|f| what.contains(f));
    let path = if net.veth {
        "hop 1 and hop 2 in two network namespaces joined by a veth pair of MTU 1500"
    } else {
        "loopback"
    };
    println!("tunnel benchmark ({path}): {ROUNDS} interleaved rounds; medians shown\n");

    if wants("throughput") {
        for (figure, streams) in [("single-stream", 1), ("parallel", PARALLEL)] {
            let mut results = vec![Vec::new(); paths.len()];
            let mut cpu = vec![Vec::new(); paths.len()];
            for _ in 0..ROUNDS {
                for (i, path) in paths.iter().enumerate() {
                    let before = path.cpu_ticks();
                    results[i].push(runtime.block_on(bulk(path.sink, streams)));
                    let seconds = (path.cpu_ticks() - before) as f64 / tick;
                    cpu[i].push(seconds / (BULK_BYTES as f64 / f64::from(1u32 << 30)));
                }
            }
            println!(
                "1{}. {figure} bulk throughput ({} MiB per run over {streams} connection(s)); CPU seconds per GiB moved, both hops",
                if streams == 1 { "a" } else { "b" },
                BULK_BYTES >> 20
            );
            let medians: Vec<f64> = results.iter_mut().map(|r| median(r)).collect();
            let cpu: Vec<f64> = cpu.iter_mut().map(|r| median(r)).collect();
            for ((path, value), cpu) in paths.iter().zip(&medians).zip(&cpu) {
                if path.pids.is_empty() {
                    println!("   {:<8} {:>9.1} MiB/s", path.name, value);
                } else {
                    println!(
                        "   {:<8} {:>9.1} MiB/s   {:>6.2} CPU s/GiB",
                        path.name, value, cpu
                    );
                }
            }
            println!(
                "   isthmus / best peer = {:.2}x   (goal >= 1.25x); CPU per GiB {:.2}x the best peer's   (goal <= 0.8x)\n",
                medians[1] / best_peer(&medians, f64::max),
                cpu[1] / best_peer(&cpu, f64::min),
            );
        }
    }

    if wants("latency") {
        let mut samples = vec![Vec::new(); paths.len()];
        for _ in 0..ROUNDS {
            for (i, path) in paths.iter().enumerate() {
                samples[i].extend(runtime.block_on(ping(path.echo)));
            }
        }
        println!("2. 64-byte round trip ({PINGS} per run), microseconds");
        let stats: Vec<(f64, f64)> = samples
            .iter_mut()
            .map(|s| (percentile(s, 0.50), percentile(s, 0.99)))
            .collect();
        for (path, (p50, p99)) in paths.iter().zip(&stats) {
            let (a50, a99) = (p50 - stats[0].0, p99 - stats[0].1);
            println!(
                "   {:<8} p50 {:>7.1}  p99 {:>7.1}   added p50 {:>7.1}  p99 {:>7.1}",
                path.name, p50, p99, a50, a99
            );
        }
        let added = |i: usize| (stats[i].0 - stats[0].0, stats[i].1 - stats[0].1);
        let (i50, i99) = added(1);
        let best50 = (2..paths.len())
            .map(|i| added(i).0)
            .fold(f64::MAX, f64::min);
        let best99 = (2..paths.len())
            .map(|i| added(i).1)
            .fold(f64::MAX, f64::min);
        println!(
            "   isthmus added / best peer added: p50 {:.2}x  p99 {:.2}x   (goal <= 1x)\n",
            i50 / best50,
            i99 / best99
        );
    }

    if wants("connections") {
        let mut results = vec![Vec::new(); paths.len()];
        for _ in 0..ROUNDS {
            for (i, path) in paths.iter().enumerate() {
                results[i].push(runtime.block_on(connections(path.echo)));
            }
        }
        println!(
            "3. new connections per second (connect, 64-byte echo, close; {CONN_CLIENTS} clients)"
        );
        let medians: Vec<f64> = results.iter_mut().map(|r| median(r)).collect();
        for (path, value) in paths.iter().zip(&medians) {
            println!("   {:<8} {:>9.0} /s", path.name, value);
        }
        println!(
            "   isthmus / best peer = {:.2}x   (goal >= 5x)\n",
            medians[1] / best_peer(&medians, f64::max)
        );
    }

    if wants("memory") && !net.veth {
        println!("4. memory per idle tunnelled connection ({IDLE_CONNECTIONS} open)");
        let procs: [(&str, Vec<&Proc>); 1] = [("isthmus", vec![&east, &west])];
        for (name, procs) in procs {
            let before: Vec<u64> = procs.iter().map(|p| p.rss_kib()).collect();
            let held = runtime.block_on(hold_idle(isthmus.echo, IDLE_CONNECTIONS));
            std::thread::sleep(Duration::from_millis(500));
            let after: Vec<u64> = procs.iter().map(|p| p.rss_kib()).collect();
            for ((p, b), a) in procs.iter().zip(&before).zip(&after) {
                let per = (a.saturating_sub(*b)) as f64 * 1024.0 / held as f64;
                println!(
                    "   {name:<8} {:<14} RSS {b:>7} KiB -> {a:>7} KiB   {per:>7.0} bytes per connection   (goal <= 8192)",
                    p.name
                );
            }
        }
        println!(
            "   (peers not measured at 10,000: each of their hops needs two descriptors per connection, past this machine's limit of 20,000)"
        );
    }
    drop((
        haproxy1, haproxy2, stunnel1, stunnel2, nginx1, nginx2, east, west, echo_proc,
    ));
    drop(net);
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() as f64 - 1.0) * q).round() as usize]
}

/// Sends `BULK_BYTES` to the sink over `streams` connections at once; MiB/s overall.
async fn bulk(sink: SocketAddr, streams: u64) -> f64 {
    let each = BULK_BYTES / streams;
    let start = Instant::now();
    let tasks: Vec<_> = (0..streams)
        .map(|_| {
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(sink).await.unwrap();
                let chunk = vec![0x5au8; 64 * 1024];
                tcp.write_u64(each).await.unwrap();
                let mut sent = 0u64;
                while sent < each {
                    let n = chunk.len().min(usize::try_from(each - sent).unwrap());
                    tcp.write_all(&chunk[..n]).await.unwrap();
                    sent += n as u64;
                }
                let mut ack = [0u8; 1];
                tcp.read_exact(&mut ack).await.unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    (each * streams) as f64 / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

async fn ping(echo: SocketAddr) -> Vec<f64> {
    let mut tcp = TcpStream::connect(echo).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    for _ in 0..200 {
        tcp.write_all(&msg).await.unwrap();
        tcp.read_exact(&mut back).await.unwrap();
    }
    let mut samples = Vec::with_capacity(PINGS);
    for _ in 0..PINGS {
        let start = Instant::now();
        tcp.write_all(&msg).await.unwrap();
        tcp.read_exact(&mut back).await.unwrap();
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    samples
}

async fn connections(echo: SocketAddr) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(CONN_SECONDS);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONN_CLIENTS {
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            let msg = [1u8; 64];
            let mut back = [0u8; 64];
            while Instant::now() < deadline {
                let Ok(mut tcp) = TcpStream::connect(echo).await else {
                    continue;
                };
                let _ = tcp.set_nodelay(true);
                if tcp.write_all(&msg).await.is_ok() && tcp.read_exact(&mut back).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                // Abortive close: keeps this side's ports out of TIME_WAIT.
                let _ = tcp.set_zero_linger();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Opens `n` connections, each confirmed end to end with a one-byte echo; returns how
/// many are held open, then keeps them until the measurement is taken by the caller.
async fn hold_idle(echo: SocketAddr, n: usize) -> usize {
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut tcp = TcpStream::connect(echo).await.unwrap();
        tcp.write_all(b"x").await.unwrap();
        let mut one = [0u8; 1];
        tcp.read_exact(&mut one).await.unwrap();
        held.push(tcp);
    }
    let count = held.len();
    // Keep them open past the caller's measurement: leak into a static holder.
    HELD.lock().unwrap().extend(held);
    count
}

static HELD: std::sync::Mutex<Vec<TcpStream>> = std::sync::Mutex::new(Vec::new());
