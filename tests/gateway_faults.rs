//! The tunnel on a bad network, through the binary: two `isthmus gateway run`
//! processes on loopback with a UDP relay of this test's own between their QUIC ports,
//! which drops, duplicates, delays and reorders datagrams (this machine's kernel has
//! no `sch_netem`: `tc qdisc add ... netem` answers "Specified qdisc kind is unknown",
//! so the relay stands in for `tc netem`). A client sends random bytes through east's
//! import to an echo server behind west and must get every byte back, in order, within
//! a bound; the throughput of each profile is printed. Then west is SIGKILLed
//! mid-transfer: the open connection must fail within a bound, east's access log must
//! say why (`UC`), and once west is back a new connection must flow within a bound.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use isthmus_testkit::chaos::schedule::Rng;

/// The longest one profile's transfer may take (no hang).
const TRANSFER_BOUND: Duration = Duration::from_secs(90);
/// A connection in flight when the peer gateway dies fails within this: the QUIC idle
/// timeout (20 s) plus slack.
const FAIL_BOUND: Duration = Duration::from_secs(30);
/// A new connection flows within this once the peer gateway is back.
const RECOVER_BOUND: Duration = Duration::from_secs(30);

/// The echo server, in Python so that neither end of the measurement is ours.
const ECHO: &str = r#"
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)
print("READY", flush=True)
def serve(c):
    with c:
        while True:
            b = c.recv(65536)
            if not b: return
            c.sendall(b)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"#;

/// Sends `size` random bytes (at most `rate` bytes/s when not 0), reads them back
/// (touching the file `$FLOWING`, when set, once the first come back), and prints `RESULT ok <bytes> <seconds>` or `RESULT fail <bytes back> <seconds>
/// <why>`.
const CLIENT: &str = r#"
import hashlib, os, socket, sys, threading, time
host, port, size, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
flowing = os.environ.get("FLOWING")  # touched when the first bytes come back
data = os.urandom(size)
start = time.monotonic()
n = 0
try:
    c = socket.create_connection((host, port), timeout=120)
    def send():
        chunk = 65536
        try:
            for i in range(0, size, chunk):
                c.sendall(data[i:i + chunk])
                if rate:
                    time.sleep(chunk / rate)
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
    t = threading.Thread(target=send, daemon=True); t.start()
    got = hashlib.sha256()
    while n < size:
        b = c.recv(65536)
        if not b: break
        got.update(b); n += len(b)
        if flowing and n == len(b):
            open(flowing, "w").close()
    took = time.monotonic() - start
    if n == size and got.digest() == hashlib.sha256(data).digest():
        print("RESULT ok", n, took, flush=True)
    elif n == size:
        print("RESULT fail", n, took, "bytes differ", flush=True)
    else:
        print("RESULT fail", n, took, "connection ended early", flush=True)
except Exception as e:
    print("RESULT fail", n, time.monotonic() - start, repr(e), flush=True)
"#;

/// What the relay does to each datagram, each way.
#[derive(Debug, Clone, Copy, Default)]
struct Faults {
    /// Dropped, per mille.
    loss: u64,
    /// Sent twice, per mille.
    duplicate: u64,
    /// Held back 5 ms so that later ones overtake it, per mille.
    reorder: u64,
    /// Added one-way delay.
    delay: Duration,
}

/// A UDP relay in front of `target`: datagrams to `front` go on to `target` from a
/// socket per sender (as a NAT would), answers come back the same way, and each one is
/// subject to the current [`Faults`].
struct Relay {
    front: SocketAddr,
    faults: Arc<Mutex<Faults>>,
}

impl Relay {
    fn start(target: SocketAddr) -> Self {
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = front.local_addr().unwrap();
        let faults = Arc::new(Mutex::new(Faults::default()));
        let shared = faults.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(relay(front, target, shared));
        });
        Self {
            front: addr,
            faults,
        }
    }

    fn set(&self, faults: Faults) {
        *self.faults.lock().unwrap() = faults;
    }
}

/// Sends `datagram` to `to` through `socket` as `faults` say: dropped, delayed, held
/// back, sent twice. Order is kept apart from what is held back.
fn forward(
    socket: &Arc<tokio::net::UdpSocket>,
    queue: &tokio::sync::mpsc::UnboundedSender<(tokio::time::Instant, Vec<u8>, SocketAddr)>,
    datagram: &[u8],
    to: SocketAddr,
    faults: Faults,
    rng: &mut Rng,
) {
    if rng.chance(faults.loss) {
        return;
    }
    let copies = if rng.chance(faults.duplicate) { 2 } else { 1 };
    for _ in 0..copies {
        let release = tokio::time::Instant::now() + faults.delay;
        if rng.chance(faults.reorder) {
            let (socket, datagram) = (socket.clone(), datagram.to_vec());
            tokio::spawn(async move {
                tokio::time::sleep_until(release + Duration::from_millis(5)).await;
                let _ = socket.send_to(&datagram, to).await;
            });
        } else {
            let _ = queue.send((release, datagram.to_vec(), to));
        }
    }
}

/// Releases each queued datagram at its time, in order.
fn sender(
    socket: Arc<tokio::net::UdpSocket>,
) -> tokio::sync::mpsc::UnboundedSender<(tokio::time::Instant, Vec<u8>, SocketAddr)> {
    let (tx, mut rx) =
        tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>, SocketAddr)>();
    tokio::spawn(async move {
        while let Some((release, datagram, to)) = rx.recv().await {
            tokio::time::sleep_until(release).await;
            let _ = socket.send_to(&datagram, to).await;
        }
    });
    tx
}

async fn relay(front: UdpSocket, target: SocketAddr, faults: Arc<Mutex<Faults>>) {
    front.set_nonblocking(true).unwrap();
    let front = Arc::new(tokio::net::UdpSocket::from_std(front).unwrap());
    let to_senders = sender(front.clone());
    let mut backs: HashMap<SocketAddr, (Arc<tokio::net::UdpSocket>, _)> = HashMap::new();
    let mut rng = Rng::new(18);
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = front.recv_from(&mut buf).await else {
            continue;
        };
        let (back, to_target) = backs.entry(from).or_insert_with(|| {
            let back = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            back.set_nonblocking(true).unwrap();
            let back = Arc::new(tokio::net::UdpSocket::from_std(back).unwrap());
            // Answers from the target go back to this sender.
            let (answers, queue, faults) = (back.clone(), to_senders.clone(), faults.clone());
            let front = front.clone();
            tokio::spawn(async move {
                let mut rng = Rng::new(81);
                let mut buf = vec![0u8; 65_536];
                while let Ok(n) = answers.recv(&mut buf).await {
                    let f = *faults.lock().unwrap();
                    forward(&front, &queue, &buf[..n], from, f, &mut rng);
                }
            });
            let to_target = sender(back.clone());
            (back, to_target)
        });
        let f = *faults.lock().unwrap();
        forward(back, to_target, &buf[..n], target, f, &mut rng);
    }
}

/// Addresses of a loopback range claimed machine-wide for one test (see
/// `isthmus_testkit::loopback`): fixed ports below the ephemeral range, so no outgoing
/// connection can take one between a pick and its bind, as a port "free a moment ago"
/// can be taken.
struct Range {
    octet: u8,
    _claim: isthmus_testkit::loopback::RangeClaim,
}

impl Range {
    fn claim(octet: u8) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let claim = runtime
            .block_on(isthmus_testkit::loopback::claim(
                &format!("127.{octet}.0.0/24"),
                Duration::from_secs(600),
            ))
            .unwrap();
        Self {
            octet,
            _claim: claim,
        }
    }

    /// Host `host` of the range, port `port`.
    fn at(&self, host: u8, port: u16) -> SocketAddr {
        SocketAddr::from(([127, self.octet, 0, host], port))
    }
}

/// A child process, killed when dropped.
struct Proc(Child);

impl Proc {
    /// Starts `command` and waits for a stdout line containing `ready`.
    fn start(mut command: Command, ready: &str) -> Self {
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let ready = ready.to_owned();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if line.contains(&ready) {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the process started");
        Self(child)
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Mesh {
    _range: Range,
    dir: tempfile::TempDir,
    relay: Relay,
    west_quic: SocketAddr,
    echo: SocketAddr,
    import: SocketAddr,
    west: Option<Proc>,
    _east: Proc,
    _echo: Proc,
}

fn write_pki(dir: &Path) {
    let pki = isthmus_testkit::TestPki::new("mesh.example", &["east", "west"]).unwrap();
    isthmus_testkit::pki::write_file(&dir.join("root.pem"), &pki.root.cert_chain_pem()).unwrap();
    for cluster in ["east", "west"] {
        let id = format!("spiffe://mesh.example/cluster/{cluster}/gateway/gw");
        let ca = pki.intermediate(cluster).unwrap();
        let leaf = isthmus_testkit::pki::issue(ca, &id, &[], Duration::from_secs(86_400)).unwrap();
        leaf.write(
            &dir.join(format!("{cluster}-chain.pem")),
            &dir.join(format!("{cluster}-key.pem")),
        )
        .unwrap();
    }
}

fn gateway_config(
    dir: &Path,
    cluster: &str,
    quic: SocketAddr,
    peer: SocketAddr,
    extra: &str,
) -> PathBuf {
    let other = if cluster == "east" { "west" } else { "east" };
    let path = dir.join(format!("{cluster}.json"));
    std::fs::write(
        &path,
        format!(
            r#"{{"cluster": "{cluster}",
 "tls": {{"bundle": "root.pem", "cert": "{cluster}-chain.pem", "key": "{cluster}-key.pem"}},
 "listen": {{"quic": "{quic}"}},
 "peers": [{{"cluster": "{other}", "address": "{peer}"}}],
 {extra}}}"#
        ),
    )
    .unwrap();
    path
}

impl Mesh {
    /// A mesh on loopback range `127.<octet>.0.0/24` (one per test, so that the tests
    /// of this file run side by side).
    fn start(octet: u8) -> Self {
        let range = Range::claim(octet);
        let dir = tempfile::tempdir().unwrap();
        write_pki(dir.path());
        let echo = range.at(2, 7007);
        let mut command = Command::new("python3");
        command.args(["-c", ECHO, &echo.ip().to_string(), &echo.port().to_string()]);
        let echo_proc = Proc::start(command, "READY");
        let (west_quic, east_quic, import) =
            (range.at(2, 4443), range.at(1, 4443), range.at(1, 9007));
        let relay = Relay::start(west_quic);
        let west = Self::start_west(dir.path(), west_quic, east_quic, echo);
        let east_config = gateway_config(
            dir.path(),
            "east",
            east_quic,
            relay.front,
            &format!(
                r#""imports": [{{"namespace": "net", "name": "echo", "cluster": "west", "port": 7, "listen": "{import}"}}],
 "access_log": {{"output": "file", "path": "east-access.log"}}"#
            ),
        );
        let mut east = Command::new(env!("CARGO_BIN_EXE_isthmus"));
        east.args(["gateway", "run", "--config"]).arg(east_config);
        let east = Proc::start(east, " ready");
        Self {
            _range: range,
            dir,
            relay,
            west_quic,
            echo,
            import,
            west: Some(west),
            _east: east,
            _echo: echo_proc,
        }
    }

    fn start_west(dir: &Path, quic: SocketAddr, east: SocketAddr, echo: SocketAddr) -> Proc {
        let config = gateway_config(
            dir,
            "west",
            quic,
            east,
            &format!(
                r#""exports": [{{"namespace": "net", "name": "echo", "ports": [{{"port": 7, "endpoints": ["{echo}"]}}]}}]"#
            ),
        );
        let mut west = Command::new(env!("CARGO_BIN_EXE_isthmus"));
        west.args(["gateway", "run", "--config"]).arg(config);
        Proc::start(west, " ready")
    }

    /// Runs the client: (ok, bytes back, seconds, its whole line).
    fn transfer(&self, size: usize, rate: usize) -> (bool, usize, f64, String) {
        self.transfer_flagging(size, rate, None)
    }

    /// [`Self::transfer`], touching `flowing` once bytes come back.
    fn transfer_flagging(
        &self,
        size: usize,
        rate: usize,
        flowing: Option<&Path>,
    ) -> (bool, usize, f64, String) {
        let mut command = Command::new("timeout");
        if let Some(path) = flowing {
            command.env("FLOWING", path);
        }
        let output = command
            .arg(TRANSFER_BOUND.as_secs().to_string())
            .args(["python3", "-c", CLIENT])
            .args([
                self.import.ip().to_string(),
                self.import.port().to_string(),
                size.to_string(),
                rate.to_string(),
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).to_string();
        let line = text
            .lines()
            .find(|l| l.starts_with("RESULT"))
            .unwrap_or_else(|| {
                panic!(
                    "the client did not finish within {TRANSFER_BOUND:?}: {text:?} {:?}",
                    String::from_utf8_lossy(&output.stderr)
                )
            })
            .to_owned();
        let words: Vec<&str> = line.split_whitespace().collect();
        (
            words[1] == "ok",
            words[2].parse().unwrap(),
            words[3].parse().unwrap(),
            line,
        )
    }
}

#[test]
fn bytes_cross_a_lossy_reordering_duplicating_slow_link_intact() {
    let mesh = Mesh::start(211);
    const SIZE: usize = 4 << 20;
    let ms = Duration::from_millis;
    for (name, faults) in [
        ("none", Faults::default()),
        (
            "loss 1%",
            Faults {
                loss: 10,
                ..Faults::default()
            },
        ),
        (
            "loss 5%",
            Faults {
                loss: 50,
                ..Faults::default()
            },
        ),
        (
            "delay 50ms",
            Faults {
                delay: ms(50),
                ..Faults::default()
            },
        ),
        (
            "delay 10ms, reorder 25%",
            Faults {
                delay: ms(10),
                reorder: 250,
                ..Faults::default()
            },
        ),
        (
            "duplicate 5%",
            Faults {
                duplicate: 50,
                ..Faults::default()
            },
        ),
        (
            "loss 5%, reorder 10%, duplicate 5%, delay 20ms",
            Faults {
                loss: 50,
                reorder: 100,
                duplicate: 50,
                delay: ms(20),
            },
        ),
    ] {
        mesh.relay.set(faults);
        let (ok, bytes, seconds, line) = mesh.transfer(SIZE, 0);
        assert!(ok, "{name}: {line}");
        assert_eq!(bytes, SIZE);
        println!(
            "{name:<48} {SIZE} bytes each way in {seconds:.2}s: {:.1} Mbit/s",
            (SIZE * 8) as f64 / seconds / 1e6
        );
    }
}

#[test]
fn a_peer_gateway_killed_mid_transfer_fails_what_was_open_and_serves_again_after_restart() {
    let mut mesh = Mesh::start(212);
    // A first transfer brings the QUIC connection up.
    let (ok, _, _, line) = mesh.transfer(64 << 10, 0);
    assert!(ok, "{line}");

    // 8 MiB at 1 MiB/s: well in flight when west dies.
    let west = mesh.west.as_ref().unwrap().0.id().to_string();
    let flowing = mesh.dir.path().join("flowing");
    let killed = std::thread::scope(|s| {
        let transfer = s.spawn(|| mesh.transfer_flagging(8 << 20, 1 << 20, Some(&flowing)));
        // In flight: bytes have come back through the tunnel (bounded wait, not a
        // guess of how long the client takes to start on a busy machine).
        let waiting = Instant::now();
        while !flowing.exists() {
            assert!(
                waiting.elapsed() < Duration::from_secs(30),
                "no bytes came back"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let at = Instant::now();
        assert!(
            Command::new("kill")
                .args(["-KILL", &west])
                .status()
                .unwrap()
                .success()
        );
        let result = transfer.join().unwrap();
        (result, at.elapsed())
    });
    mesh.west = None;
    let ((ok, bytes, _, line), failed_after) = killed;
    assert!(!ok, "the transfer cannot finish with west dead: {line}");
    assert!(bytes < 8 << 20);
    assert!(
        failed_after < FAIL_BOUND,
        "the open connection failed only after {failed_after:?}"
    );
    println!("west killed: the open connection failed after {failed_after:?} ({line})");

    // East's access log says why.
    let log = std::fs::read_to_string(mesh.dir.path().join("east-access.log")).unwrap();
    let last = log.lines().last().unwrap();
    let entry: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(
        entry["response_flags"], "UC",
        "the cut connection's line must say the peer was lost: {last}"
    );

    // West again: a new connection flows within the bound.
    let east_quic = {
        let config = std::fs::read_to_string(mesh.dir.path().join("east.json")).unwrap();
        let value: serde_json::Value = serde_json::from_str(&config).unwrap();
        value["listen"]["quic"].as_str().unwrap().parse().unwrap()
    };
    mesh.west = Some(Mesh::start_west(
        mesh.dir.path(),
        mesh.west_quic,
        east_quic,
        mesh.echo,
    ));
    let back = Instant::now();
    loop {
        let (ok, _, _, line) = mesh.transfer(64 << 10, 0);
        if ok {
            break;
        }
        assert!(
            back.elapsed() < RECOVER_BOUND,
            "no connection flowed within {RECOVER_BOUND:?} of west's restart: {line}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "west restarted: connections flow again after {:?}",
        back.elapsed()
    );
}
