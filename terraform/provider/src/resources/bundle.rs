//! `isthmus_trust_bundle`: the federation's one trust bundle — the roots in force and
//! the retired ones. A root rotation is three applies, each a plan a reviewer reads:
//! A → A+B (add the new root), reissue from B, A+B → B (drop the old, or move it to
//! `retired`). A plan that replaces every root at once is refused: gateways would stop
//! trusting each other's chains until every intermediate were reissued. Destroying the
//! resource leaves the bundle as it is (a federation always has one). Import ID: the
//! trust domain.

use async_trait::async_trait;
use isthmus_federation_api::client::FederationClient;
use isthmus_federation_api::model::TrustBundleDoc;
use isthmus_federation_api::request::SetTrustBundle;
use isthmus_federation_api::status::Consistency;

use super::{expect_revision, failed, found, number, obj, pem_text};
use crate::diag::{Diag, Step};
use crate::resource::{Outcome, Resource};
use crate::schema::{Attr, Block, Type};
use crate::value::Value;

/// `isthmus_trust_bundle`.
pub(crate) struct BundleResource;

/// The certificates of a PEM text, as DER.
fn certificates(text: &str) -> Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| e.to_string())?;
    blocks
        .into_iter()
        .map(|b| {
            if b.tag() == "CERTIFICATE" {
                Ok(b.into_contents())
            } else {
                Err(format!("a {} block, not a CERTIFICATE", b.tag()))
            }
        })
        .collect()
}

/// Each certificate of the list attribute `name`, as DER, naming the bad element.
fn listed(value: &Value, name: &str) -> Result<Vec<Vec<u8>>, Vec<Diag>> {
    let mut out = Vec::new();
    for (i, item) in value.get(name).items().iter().enumerate() {
        let at = vec![
            Step::Attr(name.into()),
            Step::Index(i64::try_from(i).unwrap_or(0)),
        ];
        match item.as_str().map(certificates) {
            Some(Ok(certs)) if certs.len() == 1 => out.extend(certs),
            Some(Ok(certs)) => {
                return Err(vec![Diag::at(
                    at,
                    "one certificate per element",
                    format!("{} certificates here", certs.len()),
                )]);
            }
            Some(Err(e)) => return Err(vec![Diag::at(at, "not a PEM certificate", e)]),
            None => {}
        }
    }
    Ok(out)
}

fn pem_of(ders: &[Vec<u8>]) -> String {
    ders.iter()
        .map(|d| pem_text(&pem::Pem::new("CERTIFICATE", d.clone())))
        .collect()
}

/// The list attribute `name` of the state: `known`'s text when it holds the same
/// certificates (so that the configuration's own PEM formatting stays), else the
/// stored ones.
fn list_state(stored: &str, known: &Value, name: &str) -> Value {
    let stored = certificates(stored).unwrap_or_default();
    if listed(known, name).ok().as_ref() == Some(&stored) && !known.get(name).is_null() {
        return known.get(name).clone();
    }
    if stored.is_empty() && known.get(name).is_null() {
        return Value::Null;
    }
    Value::List(
        stored
            .iter()
            .map(|d| Value::string(pem_text(&pem::Pem::new("CERTIFICATE", d.clone()))))
            .collect(),
    )
}

fn state_of(doc: &TrustBundleDoc, known: &Value) -> Value {
    obj(vec![
        ("id", Value::string(&doc.trust_domain)),
        ("trust_domain", Value::string(&doc.trust_domain)),
        ("roots", list_state(&doc.roots_pem, known, "roots")),
        ("retired", list_state(&doc.retired_pem, known, "retired")),
        ("revision", number(doc.revision)),
    ])
}

#[async_trait]
impl Resource for BundleResource {
    fn name(&self) -> &'static str {
        "isthmus_trust_bundle"
    }

    fn schema(&self) -> Block {
        Block {
            description: "The federation's trust bundle: the roots in force (several during a rotation) and the retired ones.",
            attrs: vec![
                Attr::computed("id", Type::String, "The trust domain (the import ID)."),
                Attr::required(
                    "roots",
                    Type::List(Box::new(Type::String)),
                    "PEM of each root in force.",
                ),
                Attr::optional(
                    "retired",
                    Type::List(Box::new(Type::String)),
                    "PEM of each retired root (chains to them are refused with their own reason).",
                ),
                Attr::computed(
                    "trust_domain",
                    Type::String,
                    "The federation's trust domain.",
                ),
                Attr::computed(
                    "revision",
                    Type::Number,
                    "The catalog revision of the bundle.",
                )
                .volatile(),
            ],
            blocks: vec![],
        }
    }

    fn validate(&self, config: &Value) -> Vec<Diag> {
        let mut problems = Vec::new();
        match listed(config, "roots") {
            Ok(roots)
                if roots.is_empty()
                    && !config.get("roots").has_unknown()
                    && !config.get("roots").is_null() =>
            {
                problems.push(Diag::attr(
                    "roots",
                    "no root",
                    "the bundle needs at least one root in force",
                ));
            }
            Ok(_) => {}
            Err(mut e) => problems.append(&mut e),
        }
        if let Err(mut e) = listed(config, "retired") {
            problems.append(&mut e);
        }
        problems
    }

    fn check_plan(&self, prior: &Value, planned: &Value) -> Vec<Diag> {
        let (Ok(before), Ok(after)) = (listed(prior, "roots"), listed(planned, "roots")) else {
            return Vec::new();
        };
        if prior.is_null() || before.is_empty() || planned.get("roots").has_unknown() {
            return Vec::new();
        }
        if !after.iter().any(|r| before.contains(r)) {
            return vec![Diag::attr(
                "roots",
                "a rotation replaces every root at once",
                "rotate in steps: first add the new root beside the old (A → A+B) and apply; reissue the intermediates from the new root; then remove the old one (A+B → B, or move it to retired)",
            )];
        }
        Vec::new()
    }

    async fn create(&self, client: &FederationClient, planned: &Value) -> Outcome<Value> {
        let current = found(
            "reading the trust bundle",
            client.trust_bundle(Consistency::Linearizable).await,
        )?;
        // The first bundle names its trust domain by its roots (their spiffe:// URI).
        let trust_domain = match &current {
            Some(doc) => doc.trust_domain.clone(),
            None => {
                let pem = pem_of(&listed(planned, "roots")?);
                isthmus_federation_api::client::bundle_from_pem(&pem, std::path::Path::new("roots"))
                    .map_err(|e| {
                        vec![Diag::attr(
                            "roots",
                            "the roots name no trust domain",
                            e.to_string(),
                        )]
                    })?
                    .trust_domain()
                    .to_string()
            }
        };
        let prior = current
            .as_ref()
            .map_or(Value::Null, |d| obj(vec![("revision", number(d.revision))]));
        self.write(client, &prior, planned, trust_domain).await
    }

    async fn update(
        &self,
        client: &FederationClient,
        prior: &Value,
        planned: &Value,
    ) -> Outcome<Value> {
        let trust_domain = super::text(prior, "trust_domain");
        self.write(client, prior, planned, trust_domain).await
    }

    async fn delete(&self, _client: &FederationClient, _prior: &Value) -> Outcome<()> {
        Ok(())
    }

    async fn read(&self, client: &FederationClient, state: &Value) -> Outcome<Option<Value>> {
        let answer = client.trust_bundle(Consistency::Linearizable).await;
        Ok(found("reading the trust bundle", answer)?.map(|doc| state_of(&doc, state)))
    }

    fn import_state(&self, id: &str) -> Outcome<Value> {
        Ok(obj(vec![("id", Value::string(id))]))
    }
}

impl BundleResource {
    async fn write(
        &self,
        client: &FederationClient,
        prior: &Value,
        planned: &Value,
        trust_domain: String,
    ) -> Outcome<Value> {
        let doc = TrustBundleDoc {
            trust_domain,
            roots_pem: pem_of(&listed(planned, "roots")?),
            retired_pem: pem_of(&listed(planned, "retired")?),
            revision: 0,
        };
        client
            .set_trust_bundle(SetTrustBundle {
                bundle: doc,
                expect: expect_revision(prior),
            })
            .await
            .map_err(|e| failed("setting the trust bundle", &e))?;
        let doc = client
            .trust_bundle(Consistency::Linearizable)
            .await
            .map_err(|e| failed("reading the trust bundle", &e))?;
        Ok(state_of(&doc, planned))
    }
}
