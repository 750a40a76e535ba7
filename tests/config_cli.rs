//! End-to-end tests of config loading and of the command-line surface.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

mod support;

use support::{Dir, isthmus};

#[test]
fn config_errors_name_file_field_value_and_what_is_accepted() {
    let dir = Dir::new();
    let cases = [
        (
            "unknown.toml",
            "[leaf]\ndefault_ttl = \"1h\"\nmax_tll = \"2h\"\n",
            vec![
                "unknown.toml",
                "field `leaf.max_tll`",
                "unknown field `max_tll`",
                "`max_ttl`",
            ],
        ),
        (
            "type.json",
            r#"{"rotation": {"renew_at_fraction": "half"}}"#,
            vec![
                "type.json",
                "field `rotation.renew_at_fraction`",
                "\"half\"",
                "expected f64",
            ],
        ),
        (
            "range.toml",
            "[intermediate]\nvalidity = \"20y\"\n",
            vec![
                "range.toml",
                "field `intermediate.validity`",
                "value 20y",
                "from 10m to 10y",
            ],
        ),
        (
            "duration.toml",
            "[leaf]\ndefault_ttl = \"1 hour\"\n",
            vec![
                "duration.toml",
                "field `leaf.default_ttl`",
                "\"1 hour\"",
                "24h",
            ],
        ),
        ("syntax.toml", "[leaf\n", vec!["syntax.toml:1:"]),
    ];
    for (name, text, expected) in cases {
        let file = dir.path(name);
        std::fs::write(&file, text).unwrap();
        for args in [
            vec!["config", "check", "ca", file.as_str()],
            vec![
                "ca",
                "init",
                "--trust-domain",
                "td",
                "--policy",
                file.as_str(),
                "--out",
                &dir.path("out"),
            ],
        ] {
            let run = isthmus(&args);
            assert_eq!(run.code, Some(1), "{name}: {run:?}");
            for needle in &expected {
                assert!(
                    run.stderr.contains(needle),
                    "{name}: missing {needle:?} in {}",
                    run.stderr
                );
            }
        }
    }
    assert!(
        !std::path::Path::new(&dir.path("out")).exists(),
        "nothing is written on a bad policy"
    );
    let yaml = dir.path("policy.yaml");
    std::fs::write(&yaml, "").unwrap();
    let run = isthmus(&["config", "check", "ca", &yaml]);
    assert!(
        run.stderr
            .contains("expected a file ending in .toml or .json"),
        "{run:?}"
    );
}

#[test]
fn a_valid_policy_is_accepted_and_applied() {
    let dir = Dir::new();
    let file = dir.path("ca.toml");
    std::fs::write(
        &file,
        "[root]\nkey_algorithm = \"ecdsa-p384\"\nvalidity = \"2y\"\n",
    )
    .unwrap();
    let run = isthmus(&["config", "check", "ca", &file]).ok();
    assert!(run.stdout.contains("ok"), "{run:?}");
    isthmus(&[
        "ca",
        "init",
        "--trust-domain",
        "td",
        "--policy",
        &file,
        "--out",
        &dir.path("r"),
    ])
    .ok();
    let inspect = isthmus(&["ca", "inspect", &dir.path("r/root.pem")]).ok();
    assert!(inspect.stdout.contains("ECDSA P-384"), "{inspect:?}");
}

#[test]
fn schema_is_generated_from_the_parser_types() {
    let run = isthmus(&["config", "schema", "ca"]).ok();
    let schema: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(schema["additionalProperties"], serde_json::json!(false));
    for section in ["root", "intermediate", "leaf", "rotation"] {
        assert!(
            schema["properties"][section].is_object(),
            "{section}: {schema}"
        );
    }
    let unknown = isthmus(&["config", "schema", "nonsense"]);
    assert_eq!(unknown.code, Some(2));
    assert!(
        unknown.stderr.contains("possible values: ca"),
        "{unknown:?}"
    );
}

#[test]
fn help_and_version_work() {
    let help = isthmus(&["--help"]).ok();
    for group in ["ca", "gateway", "federation", "dev", "vet", "config"] {
        assert!(help.stdout.contains(group), "{group}: {help:?}");
    }
    let version = isthmus(&["--version"]).ok();
    assert_eq!(
        version.stdout.trim(),
        format!("isthmus {}", env!("CARGO_PKG_VERSION"))
    );
}
