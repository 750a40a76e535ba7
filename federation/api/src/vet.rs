//! Admission checks that need more than one object: what `isthmus vet` reports offline
//! and every admin write is refused for online. Each check is pure and returns findings
//! that name the field and say what to fix; the callers give them the picture they have
//! (the catalog online, the files of a directory offline).

use crate::policy::PolicyBody;

/// One mistake in one object: where, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// The field, as the API or the file names it.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Source clusters a policy names that are not known (`known` says which are): a rule
/// or limit for a cluster that does not exist is a typo or a leftover.
pub fn policy_clusters(body: &PolicyBody, known: impl Fn(&str) -> bool) -> Vec<Finding> {
    body.named_clusters()
        .into_iter()
        .filter(|(_, cluster)| !known(cluster))
        .map(|(field, cluster)| Finding {
            field,
            message: format!(
                "unknown cluster \"{cluster}\": no such member cluster; fix the name, create the cluster first, or use \"*\""
            ),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_policy_naming_an_unknown_cluster_is_found_by_field() {
        let body = r#"{"rules":[{"name":"a","action":"allow","from":[{"cluster":"*"},{"cluster":"esat"}],"to":{"namespace":"shop"}}],
            "rate_limits":[{"name":"l","from_cluster":"west","to":{"namespace":"shop"},"connections_per_second":1}]}"#;
        let body = crate::policy::parse(body).unwrap();
        let found = policy_clusters(&body, |c| c == "west");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].field, "body.rules[0].from[1].cluster");
        assert!(found[0].message.contains("unknown cluster \"esat\""));
        assert!(policy_clusters(&body, |_| true).is_empty());
    }
}
