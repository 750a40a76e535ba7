//! `isthmus vet DIR` through the binary: each finding kind in a directory of gateway
//! configs, policy documents and claims, named by file and field, in text and JSON; a
//! clean directory passes. The same checks refuse these writes online
//! (federation/tests/admission.rs).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use support::Dir;

const WEST: &str = r#"
cluster = "west"
[tls]
bundle = "b.pem"
cert = "c.pem"
key = "k.pem"
[listen]
quic = "127.0.0.1:25443"
[[peers]]
cluster = "east"
address = "127.0.0.1:15443"
[[exports]]
namespace = "demo"
name = "echo"
ports = [{ port = 8080, endpoints = ["127.0.0.1:9000"] }]
"#;

const EAST: &str = r#"
cluster = "east"
[tls]
bundle = "b.pem"
cert = "c.pem"
key = "k.pem"
[listen]
quic = "127.0.0.1:15443"
[[peers]]
cluster = "west"
address = "127.0.0.1:25443"
[[imports]]
namespace = "demo"
name = "echo"
cluster = "west"
port = 8080
listen = "127.0.0.1:0"
[ingress]
listen = "127.0.0.1:8443"
[[ingress.hosts]]
host = "shop.example.test"
namespace = "demo"
cert = "shop.pem"
key = "shop.key"
routes = [{ path_prefix = "/", service = "echo.demo:8080" }]
[egress]
listeners = [{ listen = "127.0.0.1:15001", mode = "passthrough" }]
[[egress.hosts]]
host = "api.partner.test"
ports = [443]
namespace = "demo"
"#;

const CLAIMS: &str = r#"
[[claims]]
host = "shop.example.test"
namespace = "demo"
[[claims]]
host = "api.partner.test"
namespace = "demo"
"#;

const POLICY: &str = r#"{"rules":[{"name":"east-to-echo","action":"allow","from":[{"cluster":"east"}],"to":{"namespace":"demo","service":"echo"}}]}"#;

fn write(dir: &Dir, files: &[(&str, &str)]) {
    for (name, text) in files {
        std::fs::write(dir.path(name), text).unwrap();
    }
}

#[test]
fn a_consistent_directory_has_no_findings() {
    let dir = Dir::new();
    write(
        &dir,
        &[
            ("west.toml", WEST),
            ("east.toml", EAST),
            ("claims.toml", CLAIMS),
            ("allow.policy.json", POLICY),
        ],
    );
    let run = dir.isthmus("vet @.");
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.is_empty(), "{run:?}");
    assert!(
        run.stderr.contains("4 file(s) vetted, 0 finding(s)"),
        "{run:?}"
    );
}

#[test]
fn each_finding_kind_is_named_by_file_and_field() {
    let dir = Dir::new();
    // Member gateways on one host with overlapping import ranges.
    let member = |cluster: &str, range: &str| {
        format!(
            "cluster = \"{cluster}\"\n[listen]\nquic = \"127.0.0.1:0\"\n[federation]\nstate_dir = \"state-{cluster}\"\nimport_range = \"{range}\"\n"
        )
    };
    let east = EAST
        // A route to a service nobody exports.
        .replace(
            r#"routes = [{ path_prefix = "/", service = "echo.demo:8080" }]"#,
            r#"routes = [{ path_prefix = "/", service = "echo.demo:8080" }, { path_prefix = "/cart", service = "cart.demo:8080" }]"#,
        )
        // The egress host, for another namespace than its claim's.
        .replace("ports = [443]\nnamespace = \"demo\"", "ports = [443]\nnamespace = \"shop\"");
    write(
        &dir,
        &[
            ("west.toml", WEST),
            ("east.toml", &east),
            // North registers demo/frontend for its workloads.
            (
                "north.toml",
                &format!(
                    "{}[workload_api]\nsocket = \"w.sock\"\n[[workload_api.registrations]]\nnamespace = \"demo\"\nservice_account = \"frontend\"\nuid = 1000\n",
                    member("north", "127.90.0.0/16")
                ),
            ),
            // Rules by service account: frontend is registered, checkout nowhere.
            (
                "accounts.policy.json",
                r#"{"rules":[{"name":"front","action":"allow","from":[{"cluster":"north","namespace":"demo","service_account":"frontend"}],"to":{"namespace":"demo"}},
                             {"name":"checkout","action":"allow","from":[{"cluster":"*","service_account":"checkout"}],"to":{"namespace":"demo"}}]}"#,
            ),
            ("south.toml", &member("south", "127.90.128.0/17")),
            // An export without ports.
            (
                "broken.toml",
                &WEST
                    .replace("cluster = \"west\"", "cluster = \"broken\"")
                    .replace(
                        "ports = [{ port = 8080, endpoints = [\"127.0.0.1:9000\"] }]",
                        "ports = []",
                    ),
            ),
            // Two namespaces claiming overlapping hosts.
            (
                "claims.toml",
                &format!("{CLAIMS}[[claims]]\nhost = \"*.example.test\"\nnamespace = \"bank\"\n"),
            ),
            // A policy naming an unknown cluster, and one with a bad field.
            ("allow.policy.json", &POLICY.replace("\"east\"", "\"esat\"")),
            (
                "bad.policy.json",
                r#"{"rules":[{"name":"x","action":"allow","from":[{}],"to":{"namespace":"demo","ports":[0]}}]}"#,
            ),
        ],
    );
    let run = dir.isthmus("vet @. --format json");
    assert_eq!(run.code, Some(1), "{run:?}");
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let findings: Vec<(String, String, String)> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["file"].as_str().unwrap().to_owned(),
                f["field"].as_str().unwrap().to_owned(),
                f["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let expect = [
        ("broken.toml", "exports[0].ports", "at least one port"),
        ("claims.toml", "claims[2].host", "claimed by namespace demo"),
        (
            "allow.policy.json",
            "body.rules[0].from[0].cluster",
            "unknown cluster \"esat\"",
        ),
        ("bad.policy.json", "body.rules[0].to.ports[0]", "1 to 65535"),
        (
            "accounts.policy.json",
            "body.rules[1].from[0].service_account",
            "gives service account \"checkout\"",
        ),
        (
            "east.toml",
            "ingress.hosts[0].routes[1].service",
            "no gateway config here exports cart.demo:8080",
        ),
        (
            "east.toml",
            "egress.hosts[0].host",
            "not claimed by namespace shop",
        ),
        (
            "south.toml",
            "federation.import_range",
            "overlaps 127.90.0.0/16 of north.toml",
        ),
    ];
    for (file, field, says) in expect {
        assert!(
            findings
                .iter()
                .any(|(f, fi, m)| f == file && fi == field && m.contains(says)),
            "{file} {field} {says}: {findings:#?}"
        );
    }
    assert_eq!(findings.len(), expect.len(), "{findings:#?}");
    assert_eq!(json["files"], 9);

    // Text: one line per finding, FILE: FIELD: MESSAGE.
    let text = dir.isthmus("vet @.");
    assert_eq!(text.code, Some(1));
    assert_eq!(text.stdout.lines().count(), expect.len(), "{text:?}");
    assert!(
        text.stdout
            .contains("east.toml: ingress.hosts[0].routes[1].service: no gateway config here exports cart.demo:8080"),
        "{text:?}"
    );
    let missing = dir.isthmus("vet @nowhere");
    assert_eq!(missing.code, Some(1), "{missing:?}");
    assert!(missing.stderr.contains("not a directory"), "{missing:?}");
}
