//! A settings document as the rules read it: a tree of maps, lists and scalars with the line each came from.
//!
//! Owns: the neutral form every config document (KubeletConfiguration, an AuthorizationConfiguration, etcd's
//! YAML, OpenShift's JSON) is read into, and the path language rules and sources use to find a setting in one
//! (`authentication.anonymous.enabled`, `authorizers[].type`, `featureGates.RotateKubeletServerCertificate`).
//! Must not touch: files, SSH. Parsing text is the files stage's job (`files::yaml`); this only walks trees.

use std::fmt;

use crate::files::yaml;

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

    /// Follows a dotted path; `name[]` collects the rest of the path from every element of the list `name`;
    /// `@name` is one of the [`DERIVED`] values. `None` when the path is not in the document.
    pub fn find(&self, path: &str) -> Option<Found> {
        if let Some(name) = path.strip_prefix('@') {
            return match name {
                "secrets_write_provider" => self.secrets_write_provider(),
                _ => None,
            };
        }
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

    /// The provider an EncryptionConfiguration encrypts Secrets with as they are written: the first provider
    /// of the first resource list that covers them (`secrets`, `*.` for the core group, `*.*`). "Resource lists
    /// are processed in order, with earlier lists taking precedence" and "the first provider in the list is
    /// used to encrypt resources written into the storage" (apiserver.config.k8s.io/v1 EncryptionConfiguration;
    /// k8s.io/apiserver pkg/server/options/encryptionconfig/config.go). A provider is a map with one key, its
    /// type (`aescbc`, `kms`, `identity`, ...).
    fn secrets_write_provider(&self) -> Option<Found> {
        let Some(Doc::List { items, .. }) = self.field("resources") else { return None };
        for entry in items {
            let Some(Doc::List { items: names, .. }) = entry.field("resources") else { continue };
            let covers = names
                .iter()
                .any(|n| matches!(n, Doc::Scalar { text, .. } if matches!(text.as_str(), "secrets" | "*." | "*.*")));
            if !covers {
                continue;
            }
            return Some(match entry.field("providers") {
                Some(Doc::List { items: providers, line }) => match providers.first() {
                    Some(Doc::Map { entries, line }) if entries.len() == 1 => {
                        Found::Scalar { text: entries[0].0.clone(), kind: ScalarKind::String, line: *line }
                    }
                    Some(other) => Found::Other { line: other.line() },
                    None => Found::Other { line: *line },
                },
                _ => Found::Other { line: entry.line() },
            });
        }
        None
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

/// Values a path can name that are computed from a document rather than found at one place: `@name`, with
/// what it is and what its absence means, for people.
pub const DERIVED: [(&str, &str, &str); 1] = [(
    "secrets_write_provider",
    "the provider that encrypts Secrets as they are written",
    "no resource list covers Secrets (`secrets`, `*.` or `*.*`), so they are stored unencrypted",
)];

/// What a derived value is, for people.
pub fn derived(name: &str) -> Option<&'static str> {
    DERIVED.iter().find(|(n, _, _)| *n == name).map(|(_, what, _)| *what)
}

/// What it means that a document has no such derived value.
pub fn derived_absent(name: &str) -> Option<&'static str> {
    DERIVED.iter().find(|(n, _, _)| *n == name).map(|(_, _, absent)| *absent)
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

/// Parses a document a host sent as Kubernetes decodes a component config (`files::yaml::parse_kubernetes`:
/// JSON when it starts with `{`, else YAML 1.1 as go-yaml v2 reads it, under the size, depth and alias limits),
/// naming the file and line of an error.
pub fn parse(path: &str, bytes: &[u8]) -> Result<Doc, String> {
    let document = yaml::parse_kubernetes(path, bytes, &yaml::Limits::CONFIG).map_err(|e| e.to_string())?;
    Ok(Doc::from_yaml(&document.root))
}

impl Doc {
    /// A YAML node tree as the component decodes it: scalars resolved the go-yaml v2 way (`yes` is true,
    /// `010` is 8), every mapping entry kept in order, duplicates included (see [`Doc::duplicate_along`]).
    pub fn from_yaml(node: &yaml::Node) -> Doc {
        let line = node.line;
        match &node.data {
            yaml::Data::Map(entries) => Doc::Map {
                entries: entries
                    .iter()
                    .map(|e| (e.key.text().unwrap_or_default().to_owned(), Doc::from_yaml(&e.value)))
                    .collect(),
                line,
            },
            yaml::Data::Seq(items) => Doc::List { items: items.iter().map(Doc::from_yaml).collect(), line },
            yaml::Data::Scalar(s) => match s.kubernetes() {
                Ok(yaml::Value::Null) => Doc::Null { line },
                Ok(yaml::Value::Bool(b)) => Doc::Scalar { text: b.to_string(), kind: ScalarKind::Bool, line },
                Ok(v @ (yaml::Value::Int(_) | yaml::Value::Float(_))) => {
                    Doc::Scalar { text: v.to_string(), kind: ScalarKind::Number, line }
                }
                Ok(yaml::Value::Str(t)) => Doc::Scalar { text: t.into_owned(), kind: ScalarKind::String, line },
                // A value the component's decoder refuses: kept as text, which no typed field accepts.
                Err(_) => Doc::Scalar { text: s.text.clone(), kind: ScalarKind::String, line },
            },
        }
    }

    /// A key along `path` written twice in one mapping, with its lines: the kubelet and kube-proxy decode such
    /// a file leniently (the last wins), kube-scheduler and the API server's config files refuse it, so a
    /// setting read through one cannot be trusted either way.
    pub fn duplicate_along(&self, path: &str) -> Option<(String, Vec<usize>)> {
        let mut node = self;
        for segment in path.split('.') {
            let key = segment.strip_suffix("[]").unwrap_or(segment);
            let Doc::Map { entries, .. } = node else { return None };
            let lines: Vec<usize> = entries.iter().filter(|(k, _)| k == key).map(|(_, v)| v.line()).collect();
            if lines.len() > 1 {
                return Some((key.to_owned(), lines));
            }
            node = node.field(key)?;
            if segment.ends_with("[]") {
                return None;
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(json: &str) -> Doc {
        Doc::from_json(&serde_json::from_str(json).unwrap())
    }

    #[test]
    fn yaml_reads_as_the_component_decodes_it() {
        let d = parse(
            "/var/lib/kubelet/config.yaml",
            b"apiVersion: kubelet.config.k8s.io/v1beta1\nauthentication:\n  anonymous:\n    enabled: no\nreadOnlyPort: 010\nstaticPodPath: /etc/kubernetes/manifests\n",
        )
        .unwrap();
        assert!(
            matches!(d.find("authentication.anonymous.enabled"), Some(Found::Scalar { ref text, kind: ScalarKind::Bool, line: 4 }) if text == "false"),
            "go-yaml v2 reads `no` as false"
        );
        assert!(matches!(d.find("readOnlyPort"), Some(Found::Scalar { ref text, .. }) if text == "8"), "010 is octal");
        let err = parse("/c.yaml", b"a: [1, 2\n").unwrap_err();
        assert!(err.starts_with("/c.yaml:"), "{err}");
        let dup = parse("/c.yaml", b"readOnlyPort: 0\nreadOnlyPort: 10255\n").unwrap();
        assert_eq!(dup.duplicate_along("readOnlyPort"), Some(("readOnlyPort".into(), vec![1, 2])));
        assert_eq!(dup.duplicate_along("other"), None);
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

    #[test]
    fn the_provider_that_writes_secrets_is_the_first_of_the_first_list_covering_them() {
        let provider = |json: &str| doc(json).find("@secrets_write_provider").map(|f| f.to_string());
        let events_then_all = r#"{"resources": [
            {"resources": ["events"], "providers": [{"identity": {}}]},
            {"resources": ["secrets", "configmaps"], "providers": [{"aescbc": {"keys": []}}, {"identity": {}}]},
            {"resources": ["*.*"], "providers": [{"identity": {}}]}]}"#;
        assert_eq!(provider(events_then_all).as_deref(), Some("aescbc"));
        // identity first: written unencrypted, whatever follows.
        let identity_first =
            r#"{"resources": [{"resources": ["secrets"], "providers": [{"identity": {}}, {"aescbc": {}}]}]}"#;
        assert_eq!(provider(identity_first).as_deref(), Some("identity"));
        // Wildcards cover Secrets; an earlier list wins over a later one.
        assert_eq!(
            provider(r#"{"resources": [{"resources": ["*."], "providers": [{"kms": {}}]}]}"#).as_deref(),
            Some("kms")
        );
        assert_eq!(
            provider(r#"{"resources": [{"resources": ["*.*"], "providers": [{"secretbox": {}}]}, {"resources": ["secrets"], "providers": [{"identity": {}}]}]}"#).as_deref(),
            Some("secretbox")
        );
        // Nothing covers Secrets.
        assert_eq!(provider(r#"{"resources": [{"resources": ["configmaps"], "providers": [{"aescbc": {}}]}]}"#), None);
        // A provider that is not one map of one type is not a value.
        assert_eq!(
            provider(r#"{"resources": [{"resources": ["secrets"], "providers": []}]}"#).as_deref(),
            Some("(not a value)")
        );
    }
}
