//! The shape of a resource, data source or the provider's settings, written once and
//! used twice: as the schema Terraform asks for ([`Block::to_proto`]) and to plan
//! ([`plan`]): what a change keeps, what it cannot change in place, and which of the
//! server's values are known only after apply. Pure.

use std::collections::BTreeMap;

use crate::proto::schema;
use crate::value::Value;

/// An attribute's type.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Type {
    /// A string.
    String,
    /// A number.
    Number,
    /// A bool.
    Bool,
    /// A list of one type.
    List(Box<Type>),
    /// An object of named attributes.
    Object(Vec<(&'static str, Type)>),
}

impl Type {
    fn json(&self) -> serde_json::Value {
        match self {
            Self::String => "string".into(),
            Self::Number => "number".into(),
            Self::Bool => "bool".into(),
            Self::List(item) => serde_json::json!(["list", item.json()]),
            Self::Object(fields) => serde_json::json!([
                "object",
                fields
                    .iter()
                    .map(|(k, t)| ((*k).to_owned(), t.json()))
                    .collect::<serde_json::Map<_, _>>()
            ]),
        }
    }
}

/// Who sets an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The configuration must.
    Required,
    /// The configuration may.
    Optional,
    /// The server does.
    Computed,
}

/// One attribute.
#[derive(Debug, Clone)]
pub(crate) struct Attr {
    /// Its name.
    pub(crate) name: &'static str,
    /// Its type.
    pub(crate) ty: Type,
    /// Who sets it.
    pub(crate) mode: Mode,
    /// What it is, for `terraform providers schema` and the docs.
    pub(crate) description: &'static str,
    /// Kept out of plans and output.
    pub(crate) sensitive: bool,
    /// A change replaces the object.
    pub(crate) force_new: bool,
    /// A computed value the server changes on every update (a revision).
    pub(crate) volatile: bool,
    /// The value an unset optional attribute takes (so that state, plan and an import
    /// agree whether the configuration spells the default out or leaves it unset).
    pub(crate) default: Option<Value>,
}

impl Attr {
    fn new(name: &'static str, ty: Type, mode: Mode, description: &'static str) -> Self {
        Self {
            name,
            ty,
            mode,
            description,
            sensitive: false,
            force_new: false,
            volatile: false,
            default: None,
        }
    }

    /// A required attribute.
    pub(crate) fn required(name: &'static str, ty: Type, description: &'static str) -> Self {
        Self::new(name, ty, Mode::Required, description)
    }

    /// An optional attribute.
    pub(crate) fn optional(name: &'static str, ty: Type, description: &'static str) -> Self {
        Self::new(name, ty, Mode::Optional, description)
    }

    /// A computed attribute.
    pub(crate) fn computed(name: &'static str, ty: Type, description: &'static str) -> Self {
        Self::new(name, ty, Mode::Computed, description)
    }

    /// A change of it replaces the object.
    pub(crate) fn force_new(mut self) -> Self {
        self.force_new = true;
        self
    }

    /// Kept out of plans and output.
    pub(crate) fn sensitive(mut self) -> Self {
        self.sensitive = true;
        self
    }

    /// Takes `value` when unset.
    pub(crate) fn default(mut self, value: Value) -> Self {
        self.default = Some(value);
        self
    }

    /// Changes on every update.
    pub(crate) fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }
}

/// How a nested block repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nesting {
    /// At most one (null when absent).
    Single,
    /// A list (empty when absent).
    List,
}

/// A nested block.
#[derive(Debug, Clone)]
pub(crate) struct Nested {
    /// Its name.
    pub(crate) name: &'static str,
    /// How it repeats.
    pub(crate) nesting: Nesting,
    /// What it holds.
    pub(crate) block: Block,
    /// At least this many.
    pub(crate) min: i64,
    /// At most this many (0: no bound).
    pub(crate) max: i64,
    /// A change replaces the object.
    pub(crate) force_new: bool,
}

/// A block: attributes and nested blocks.
#[derive(Debug, Clone, Default)]
pub(crate) struct Block {
    /// What it is.
    pub(crate) description: &'static str,
    /// Its attributes.
    pub(crate) attrs: Vec<Attr>,
    /// Its nested blocks.
    pub(crate) blocks: Vec<Nested>,
}

impl Block {
    /// The schema Terraform reads.
    pub(crate) fn to_proto(&self) -> schema::Block {
        schema::Block {
            version: 0,
            attributes: self
                .attrs
                .iter()
                .map(|a| schema::Attribute {
                    name: a.name.to_owned(),
                    r#type: a.ty.json().to_string().into_bytes(),
                    description: a.description.to_owned(),
                    required: a.mode == Mode::Required,
                    optional: a.mode == Mode::Optional,
                    computed: a.mode == Mode::Computed || a.default.is_some(),
                    sensitive: a.sensitive,
                    ..Default::default()
                })
                .collect(),
            block_types: self
                .blocks
                .iter()
                .map(|b| schema::NestedBlock {
                    type_name: b.name.to_owned(),
                    block: Some(b.block.to_proto()),
                    nesting: match b.nesting {
                        Nesting::Single => schema::nested_block::NestingMode::Single,
                        Nesting::List => schema::nested_block::NestingMode::List,
                    } as i32,
                    min_items: b.min,
                    max_items: b.max,
                })
                .collect(),
            description: self.description.to_owned(),
            ..Default::default()
        }
    }

    /// `value` with every attribute and block of this block present, as Terraform
    /// wants an object back (absent attributes null, absent list blocks empty).
    pub(crate) fn complete(&self, value: &Value) -> Value {
        self.shape(value, false)
    }

    /// [`Self::complete`] with unset attributes at their defaults, at every depth.
    pub(crate) fn with_defaults(&self, value: &Value) -> Value {
        self.shape(value, true)
    }

    fn shape(&self, value: &Value, defaults: bool) -> Value {
        let mut fields = BTreeMap::new();
        for a in &self.attrs {
            let v = match (value.get(a.name), &a.default) {
                (Value::Null, Some(default)) if defaults => default.clone(),
                (v, _) => v.clone(),
            };
            fields.insert(a.name.to_owned(), v);
        }
        for b in &self.blocks {
            let v = value.get(b.name);
            let v = match b.nesting {
                Nesting::Single if v.is_null() => Value::Null,
                Nesting::Single => b.block.shape(v, defaults),
                Nesting::List => Value::List(
                    v.items()
                        .iter()
                        .map(|i| b.block.shape(i, defaults))
                        .collect(),
                ),
            };
            fields.insert(b.name.to_owned(), v);
        }
        Value::Map(fields)
    }

    /// The top-level schema.
    pub(crate) fn schema(&self) -> crate::proto::Schema {
        crate::proto::Schema {
            version: 0,
            block: Some(self.to_proto()),
        }
    }
}

/// A planned change: the new state as it will be, and what forces a replacement.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planned {
    /// The planned state (server-set values unknown where they will change).
    pub(crate) state: Value,
    /// The top-level attributes or blocks whose change replaces the object.
    pub(crate) replace: Vec<&'static str>,
}

/// Plans `proposed` (the configuration merged over the prior state) against `prior`
/// (null for a create): a computed attribute keeps its prior value unless the object
/// is new, replaced, or it is volatile and something else changes; then it is unknown.
pub(crate) fn plan(block: &Block, prior: &Value, proposed: &Value) -> Planned {
    let proposed = block.with_defaults(proposed);
    if prior.is_null() {
        return Planned {
            state: unknown_computed(block, &proposed),
            replace: Vec::new(),
        };
    }
    let prior = block.complete(prior);
    let configured_change = |name: &str| prior.get(name) != proposed.get(name);
    let replace: Vec<&'static str> = block
        .attrs
        .iter()
        .filter(|a| a.force_new && a.mode != Mode::Computed && configured_change(a.name))
        .map(|a| a.name)
        .chain(
            block
                .blocks
                .iter()
                .filter(|b| b.force_new && configured_change(b.name))
                .map(|b| b.name),
        )
        .collect();
    if !replace.is_empty() {
        return Planned {
            state: unknown_computed(block, &proposed),
            replace,
        };
    }
    let changed = block
        .attrs
        .iter()
        .filter(|a| a.mode != Mode::Computed)
        .any(|a| configured_change(a.name))
        || block.blocks.iter().any(|b| configured_change(b.name));
    let mut state = proposed.clone();
    if let Value::Map(fields) = &mut state {
        for a in block.attrs.iter().filter(|a| a.mode == Mode::Computed) {
            let value = if changed && a.volatile {
                Value::Unknown
            } else {
                prior.get(a.name).clone()
            };
            fields.insert(a.name.to_owned(), value);
        }
    }
    Planned {
        state,
        replace: Vec::new(),
    }
}

fn unknown_computed(block: &Block, proposed: &Value) -> Value {
    let mut state = proposed.clone();
    if let Value::Map(fields) = &mut state {
        for a in block.attrs.iter().filter(|a| a.mode == Mode::Computed) {
            fields.insert(a.name.to_owned(), Value::Unknown);
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Block {
        Block {
            description: "a cluster",
            attrs: vec![
                Attr::required("name", Type::String, "name").force_new(),
                Attr::optional("locality", Type::String, "where"),
                Attr::computed("revision", Type::Number, "rev").volatile(),
                Attr::computed("token", Type::String, "token").sensitive(),
            ],
            blocks: vec![],
        }
    }

    fn obj(pairs: &[(&str, Value)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn computed_values_are_unknown_on_create_kept_on_no_op_and_replaced_with_the_object() {
        let b = cluster();
        let config = obj(&[("name", Value::string("west"))]);
        let created = plan(&b, &Value::Null, &config);
        assert_eq!(created.state.get("revision"), &Value::Unknown);
        assert_eq!(created.state.get("locality"), &Value::Null);
        let prior = obj(&[
            ("name", Value::string("west")),
            ("locality", Value::Null),
            ("revision", Value::Int(7)),
            ("token", Value::string("secret")),
        ]);
        let same = plan(&b, &prior, &config);
        assert_eq!(same.state, b.complete(&prior), "no change, no diff");
        let moved = plan(
            &b,
            &prior,
            &obj(&[
                ("name", Value::string("west")),
                ("locality", Value::string("eu")),
            ]),
        );
        assert_eq!(
            moved.state.get("revision"),
            &Value::Unknown,
            "a revision moves"
        );
        assert_eq!(
            moved.state.get("token"),
            &Value::string("secret"),
            "a token stays"
        );
        let renamed = plan(&b, &prior, &obj(&[("name", Value::string("east"))]));
        assert_eq!(renamed.replace, vec!["name"]);
        assert_eq!(renamed.state.get("token"), &Value::Unknown);
    }

    #[test]
    fn the_schema_types_are_terraforms_json() {
        let t = Type::List(Box::new(Type::Object(vec![("port", Type::Number)])));
        assert_eq!(
            t.json().to_string(),
            r#"["list",["object",{"port":"number"}]]"#
        );
        let proto = cluster().to_proto();
        assert_eq!(proto.attributes.len(), 4);
        assert!(proto.attributes[3].sensitive && proto.attributes[3].computed);
    }
}
