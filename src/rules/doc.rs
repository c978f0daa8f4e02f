//! A settings document as the rules read it: a tree of maps, lists and scalars with the line each came from.
//!
//! Owns: the neutral form every config document (KubeletConfiguration, an AuthorizationConfiguration, etcd's
//! YAML, OpenShift's JSON) is read into, and the path language rules and sources use to find a setting in one
//! (`authentication.anonymous.enabled`, `authorizers[].type`, `featureGates.RotateKubeletServerCertificate`).
//! Must not touch: files, SSH. Parsing text is the files stage's job (`files::yaml`); this only walks trees.

use std::fmt;

/// One node of a document.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Null {
        line: usize,
    },
    /// A scalar as the component's decoder reads it: booleans and numbers in their JSON spelling.
    Scalar {
        text: String,
        kind: ScalarKind,
        line: usize,
    },
    List {
        items: Vec<Doc>,
        line: usize,
    },
    Map {
        entries: Vec<(String, Doc)>,
        line: usize,
    },
}

/// What a scalar decodes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    Bool,
    Number,
    String,
}

/// What a path found: one scalar, or a list of scalars (for `[]` paths or a list field).
#[derive(Debug, Clone, PartialEq)]
pub enum Found {
    Scalar {
        text: String,
        kind: ScalarKind,
        line: usize,
    },
    List {
        items: Vec<String>,
        line: usize,
    },
    /// The field is there but is a map or null: not a setting value.
    Other {
        line: usize,
    },
}

impl Doc {
    pub fn line(&self) -> usize {
        match self {
            Doc::Null { line } | Doc::Scalar { line, .. } | Doc::List { line, .. } | Doc::Map { line, .. } => *line,
        }
    }

    /// The entry `key` of a map.
    pub fn field(&self, key: &str) -> Option<&Doc> {
        match self {
            // A later duplicate wins, as encoding/json and sigs.k8s.io/yaml decode it.
            Doc::Map { entries, .. } => entries.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows a dotted path; `name[]` collects the rest of the path from every element of the list `name`.
    /// `None` when the path is not in the document.
    pub fn find(&self, path: &str) -> Option<Found> {
        let mut node = self;
        let mut rest = path;
        loop {
            let (segment, tail) = match rest.split_once('.') {
                Some((s, t)) => (s, Some(t)),
                None => (rest, None),
            };
            if let Some(list_name) = segment.strip_suffix("[]") {
                let Doc::List { items, line } = node.field(list_name)? else { return None };
                let mut collected = Vec::new();
                for item in items {
                    let value = match tail {
                        Some(t) => item.find(t),
                        None => item.found(),
                    };
                    match value {
                        Some(Found::Scalar { text, .. }) => collected.push(text),
                        Some(Found::List { items, .. }) => collected.extend(items),
                        _ => {}
                    }
                }
                return Some(Found::List { items: collected, line: *line });
            }
            node = node.field(segment)?;
            match tail {
                Some(t) => rest = t,
                None => return node.found(),
            }
        }
    }

    fn found(&self) -> Option<Found> {
        Some(match self {
            Doc::Scalar { text, kind, line } => Found::Scalar { text: text.clone(), kind: *kind, line: *line },
            Doc::List { items, line } => Found::List {
                items: items
                    .iter()
                    .filter_map(|i| match i {
                        Doc::Scalar { text, .. } => Some(text.clone()),
                        _ => None,
                    })
                    .collect(),
                line: *line,
            },
            Doc::Map { line, .. } | Doc::Null { line } => Found::Other { line: *line },
        })
    }

    /// A JSON document (OpenShift's KubeAPIServerConfig is JSON; so may any config be), without lines.
    pub fn from_json(v: &serde_json::Value) -> Doc {
        match v {
            serde_json::Value::Null => Doc::Null { line: 0 },
            serde_json::Value::Bool(b) => Doc::Scalar { text: b.to_string(), kind: ScalarKind::Bool, line: 0 },
            serde_json::Value::Number(n) => Doc::Scalar { text: n.to_string(), kind: ScalarKind::Number, line: 0 },
            serde_json::Value::String(s) => Doc::Scalar { text: s.clone(), kind: ScalarKind::String, line: 0 },
            serde_json::Value::Array(a) => Doc::List { items: a.iter().map(Doc::from_json).collect(), line: 0 },
            serde_json::Value::Object(o) => {
                Doc::Map { entries: o.iter().map(|(k, v)| (k.clone(), Doc::from_json(v))).collect(), line: 0 }
            }
        }
    }
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Scalar { text, .. } => f.write_str(text),
            Found::List { items, .. } => write!(f, "[{}]", items.join(", ")),
            Found::Other { .. } => f.write_str("(not a value)"),
        }
    }
}

impl Found {
    pub fn line(&self) -> usize {
        match self {
            Found::Scalar { line, .. } | Found::List { line, .. } | Found::Other { line } => *line,
        }
    }
}

/// Parses a document a host sent (JSON; YAML through `files::yaml`), naming the file and line of an error.
pub fn parse(path: &str, bytes: &[u8]) -> Result<Doc, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("{path}: not UTF-8 text ({e})"))?;
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => Ok(Doc::from_json(&v)),
        Err(e) => Err(format!("{path}:{}: {e}", e.line())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Doc {
        Doc::from_json(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn paths_find_scalars_lists_and_collected_fields() {
        let d = doc(r#"{"authentication": {"anonymous": {"enabled": false}}, "readOnlyPort": 0,
               "tlsCipherSuites": ["A", "B"], "featureGates": {"RotateKubeletServerCertificate": true},
               "authorizers": [{"type": "Node", "name": "node"}, {"type": "RBAC"}]}"#);
        assert!(
            matches!(d.find("authentication.anonymous.enabled"), Some(Found::Scalar { ref text, kind: ScalarKind::Bool, .. }) if text == "false")
        );
        assert!(matches!(d.find("readOnlyPort"), Some(Found::Scalar { ref text, .. }) if text == "0"));
        assert!(matches!(d.find("tlsCipherSuites"), Some(Found::List { ref items, .. }) if items == &["A", "B"]));
        assert!(
            matches!(d.find("featureGates.RotateKubeletServerCertificate"), Some(Found::Scalar { ref text, .. }) if text == "true")
        );
        assert!(
            matches!(d.find("authorizers[].type"), Some(Found::List { ref items, .. }) if items == &["Node", "RBAC"])
        );
        assert!(d.find("authentication.webhook.enabled").is_none());
        assert!(matches!(d.find("authentication"), Some(Found::Other { .. })));
        assert!(d.find("readOnlyPort.x").is_none(), "no field under a scalar");
    }
}
