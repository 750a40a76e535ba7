//! The provider's resources and data sources, and what they share: reading fields of
//! a state, building one, and telling "gone" from a failure.

mod bundle;
mod claim;
mod cluster;
mod data;
mod export;
mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;

use isthmus_federation_api::ApiError;
use isthmus_federation_api::client::ClientError;
use isthmus_federation_api::model::Expect;

use crate::diag::Diag;
use crate::resource::{DataSource, Resource};
use crate::value::Value;

/// Every managed resource.
pub(crate) fn all() -> Vec<Arc<dyn Resource>> {
    vec![
        Arc::new(cluster::ClusterResource),
        Arc::new(export::ExportResource),
        Arc::new(claim::ClaimResource),
        Arc::new(policy::PolicyResource),
        Arc::new(bundle::BundleResource),
    ]
}

/// Every data source.
pub(crate) fn data_sources() -> Vec<Arc<dyn DataSource>> {
    vec![
        Arc::new(data::BundleData),
        Arc::new(data::ClustersData),
        Arc::new(data::ExportsData),
    ]
}

/// An object of `pairs`.
pub(crate) fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Map(
        pairs
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect::<BTreeMap<_, _>>(),
    )
}

/// The string attribute `name` (empty when null or unknown: the schema makes the
/// required ones present by apply).
pub(crate) fn text(value: &Value, name: &str) -> String {
    value.get(name).as_str().unwrap_or_default().to_owned()
}

/// The optional string attribute `name`.
pub(crate) fn maybe_text(value: &Value, name: &str) -> Option<String> {
    value.get(name).as_str().map(str::to_owned)
}

/// A revision (a number attribute) as the compare-and-set expectation of a change.
pub(crate) fn expect_revision(value: &Value) -> Expect {
    match value
        .get("revision")
        .as_i64()
        .and_then(|r| u64::try_from(r).ok())
    {
        Some(r) if r > 0 => Expect::Revision(r),
        _ => Expect::Any,
    }
}

/// A revision as a value.
pub(crate) fn number(n: u64) -> Value {
    Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// Whether the federation said the object does not exist.
pub(crate) fn gone(error: &ClientError) -> bool {
    matches!(error.api(), Some(ApiError::NotFound(_)))
}

/// A delete's answer: done, or already gone (both leave nothing to delete).
pub(crate) fn deleted<T>(what: &str, answer: Result<T, ClientError>) -> Result<(), Vec<Diag>> {
    match answer {
        Ok(_) => Ok(()),
        Err(e) if gone(&e) => Ok(()),
        Err(e) => Err(failed(what, &e)),
    }
}

/// A read's answer: the object, or `None` when it is gone (Terraform plans it anew).
pub(crate) fn found<T>(what: &str, answer: Result<T, ClientError>) -> Result<Option<T>, Vec<Diag>> {
    match answer {
        Ok(object) => Ok(Some(object)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(failed(what, &e)),
    }
}

/// The import state of an object whose ID is its name (a DNS-1123 label).
pub(crate) fn import_by_name(kind: &str, id: &str) -> Result<Value, Vec<Diag>> {
    if let Err(e) = isthmus_federation_api::validate::name("id", id) {
        return Err(vec![Diag::error(
            format!("not a {kind} import ID"),
            format!("the ID is the {kind}'s name: {e}"),
        )]);
    }
    Ok(obj(vec![("name", Value::string(id))]))
}

/// One failed call, as a diagnostic list.
pub(crate) fn failed(what: &str, error: &ClientError) -> Vec<Diag> {
    vec![Diag::client(what, error, body_path)]
}

/// A federation field path (`ports[1].port`, `body.rules[0].to`) as attribute steps
/// (best effort: the summary names it in words too).
pub(crate) fn body_path(field: &str) -> Vec<crate::diag::Step> {
    use crate::diag::Step;
    let mut steps = Vec::new();
    for part in field.trim_start_matches("body.").split('.') {
        let (name, index) = match part.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<i64>().ok()),
            None => (part, None),
        };
        if !name.is_empty() {
            steps.push(Step::Attr(name.to_owned()));
        }
        if let Some(i) = index {
            steps.push(Step::Index(i));
        }
    }
    steps
}

/// A PEM block as files on Unix hold it (LF line ends; the `pem` crate writes CRLF).
pub(crate) fn pem_text(block: &pem::Pem) -> String {
    pem::encode_config(
        block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
