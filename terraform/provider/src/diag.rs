//! Diagnostics: what goes back to Terraform when something is wrong, naming the
//! attribute (Terraform points at it in the configuration) and saying what to do.

use isthmus_federation_api::client::ClientError;

use crate::proto;

/// One step of an attribute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// An attribute or block.
    Attr(String),
    /// An element of a list.
    Index(i64),
}

/// A problem to report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Diag {
    /// One line.
    pub(crate) summary: String,
    /// What to do.
    pub(crate) detail: String,
    /// The attribute it is about, if any.
    pub(crate) path: Vec<Step>,
    /// A warning, not an error.
    pub(crate) warning: bool,
}

impl Diag {
    /// An error about nothing in particular.
    pub(crate) fn error(summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            detail: detail.into(),
            path: Vec::new(),
            warning: false,
        }
    }

    /// An error about the attribute at `path` (`["rule", 0, "to"]` as steps).
    pub(crate) fn at(
        path: Vec<Step>,
        summary: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            path,
            ..Self::error(summary, detail)
        }
    }

    /// An error about the top-level attribute `name`.
    pub(crate) fn attr(name: &str, summary: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::at(vec![Step::Attr(name.to_owned())], summary, detail)
    }

    /// A federation's answer to a call `what` (`creating cluster "west"`), the
    /// attribute named when the federation named a field.
    pub(crate) fn client(
        what: &str,
        error: &ClientError,
        field_to_path: impl Fn(&str) -> Vec<Step>,
    ) -> Self {
        let path = match error.api() {
            Some(
                isthmus_federation_api::ApiError::InvalidArgument { field, .. }
                | isthmus_federation_api::ApiError::Admission { field, .. },
            ) => field_to_path(field),
            _ => Vec::new(),
        };
        Self::at(
            path,
            format!("{what}: the federation refused"),
            error.to_string(),
        )
    }

    /// Its protobuf form.
    pub(crate) fn to_proto(&self) -> proto::Diagnostic {
        proto::Diagnostic {
            severity: if self.warning {
                proto::diagnostic::Severity::Warning
            } else {
                proto::diagnostic::Severity::Error
            } as i32,
            summary: self.summary.clone(),
            detail: self.detail.clone(),
            attribute: (!self.path.is_empty()).then(|| proto::AttributePath {
                steps: self
                    .path
                    .iter()
                    .map(|s| proto::attribute_path::Step {
                        selector: Some(match s {
                            Step::Attr(name) => {
                                proto::attribute_path::step::Selector::AttributeName(name.clone())
                            }
                            Step::Index(i) => {
                                proto::attribute_path::step::Selector::ElementKeyInt(*i)
                            }
                        }),
                    })
                    .collect(),
            }),
        }
    }
}

/// The diagnostics of a list.
pub(crate) fn to_proto(diags: &[Diag]) -> Vec<proto::Diagnostic> {
    diags.iter().map(Diag::to_proto).collect()
}

/// A top-level attribute as a path.
pub(crate) fn top(name: &str) -> Vec<Step> {
    vec![Step::Attr(name.to_owned())]
}
