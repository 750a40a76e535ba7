//! The stored form of a policy body. Model version 2 stores the document as a JSON
//! object; version 1 stored it as JSON text. Both read: text is parsed (and checked)
//! here, once, as the record is decoded — in the Raft log, the state machine, a snapshot
//! or a forwarded request — so that applying an entry never parses. Version 1 text was
//! admitted by this same language, so it parses to what it meant then.

use serde::Deserialize as _;
use serde::de::{Deserializer, Error as _};

use super::PolicyBody;

/// Decodes a stored body: a document (model 2) or its JSON text (model 1).
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<PolicyBody, D::Error> {
    match serde_json::Value::deserialize(deserializer)? {
        serde_json::Value::String(text) => super::parse(&text)
            .map_err(|e| D::Error::custom(format!("a model-1 policy body does not read: {e}"))),
        document => serde_json::from_value(document).map_err(D::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Policy;

    #[test]
    fn model_1_text_and_model_2_documents_both_read_to_the_same_policy() {
        let text = r#"{"rules":[{"name":"a","action":"allow","from":[{"cluster":"*"}],"to":{"namespace":"shop"}}]}"#;
        let v1 = serde_json::json!({ "name": "p", "body": text, "revision": 3 });
        let from_v1: Policy = serde_json::from_value(v1).unwrap();
        let v2 = serde_json::to_value(&from_v1).unwrap();
        assert!(v2["body"].is_object(), "model 2 stores a document: {v2}");
        let from_v2: Policy = serde_json::from_value(v2).unwrap();
        assert_eq!(from_v1, from_v2);
        assert_eq!(from_v1.body.rules[0].name, "a");
    }

    #[test]
    fn a_model_1_body_that_does_not_parse_is_refused_naming_the_field() {
        let v1 = serde_json::json!({ "name": "p", "body": "{\"rules\":[]}", "revision": 3 });
        let err = serde_json::from_value::<Policy>(v1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model-1") && err.contains("body.rules"),
            "{err}"
        );
    }
}
