//! `kubectl get nodes -o json`: a `List` of `Node` objects (or one `Node`). Each node becomes a host named after
//! it, at its `InternalIP` (the first IPv4 one, else the first), in the cluster named on the command line, with
//! roles from its `node-role.kubernetes.io/ROLE` labels (`control-plane`, and the older `master`, are
//! control-plane; `etcd` is etcd; `worker` and `node` are worker). A node without a role label runs a kubelet
//! and nothing else anyone declared: it is a worker. Role labels fleetaudit has no role for, and nodes without
//! an InternalIP, are [`Note`]s naming the node's line in the document.

use std::path::Path;

use serde_json::Value;

use super::{ImportError, Imported, ImportedHost, Note};
use crate::model::Role;

const ROLE_LABEL: &str = "node-role.kubernetes.io/";

/// Imports the nodes in `text` (read from `path`) into `cluster`.
pub fn import(path: &Path, text: &str, cluster: &str) -> Result<Imported, ImportError> {
    let file = path.display().to_string();
    let doc: Value = serde_json::from_str(text).map_err(|e| ImportError::Syntax {
        at: format!("{file}:{}", e.line()),
        message: format!("not JSON ({e}); produce it with `kubectl get nodes -o json`"),
    })?;
    let items: Vec<&Value> = match doc.get("kind").and_then(Value::as_str) {
        Some("List" | "NodeList") => {
            doc.get("items").and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default()
        }
        Some("Node") => vec![&doc],
        other => {
            return Err(ImportError::Syntax {
                at: format!("{file}:1"),
                message: format!(
                    "kind {}: expected the List of Nodes that `kubectl get nodes -o json` prints",
                    other.map_or("missing".to_owned(), |k| format!("{k:?}"))
                ),
            });
        }
    };
    let cluster = super::clean_name(cluster)
        .ok_or_else(|| ImportError::Usage(format!("--cluster {cluster:?} is not a usable cluster name")))?;
    let mut hosts = Vec::new();
    let mut notes = Vec::new();
    // A line for messages: where the node's name first appears in the document (kubectl prints one field a
    // line, so that is inside the node's object), else its index.
    let place = |i: usize, name: &str| match text.find(&format!("\"{name}\"")) {
        Some(offset) if !name.is_empty() => {
            format!("{file}:{} (items[{i}])", text[..offset].bytes().filter(|&b| b == b'\n').count() + 1)
        }
        _ => format!("{file}: items[{i}]"),
    };
    for (i, item) in items.iter().enumerate() {
        let name = item.pointer("/metadata/name").and_then(Value::as_str).unwrap_or_default();
        let at = place(i, name);
        if item.get("kind").and_then(Value::as_str).is_some_and(|k| k != "Node") {
            notes.push(Note { at, message: "not a Node: not imported".into() });
            continue;
        }
        let Some(clean) = super::clean_name(name) else {
            notes.push(Note { at, message: format!("node name {name:?} is not usable as a host name: not imported") });
            continue;
        };
        let addresses: Vec<(&str, &str)> = item
            .pointer("/status/addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|a| Some((a.get("type")?.as_str()?, a.get("address")?.as_str()?)))
            .collect();
        let internal: Vec<&str> = addresses.iter().filter(|(t, _)| *t == "InternalIP").map(|(_, a)| *a).collect();
        let Some(address) =
            internal.iter().find(|a| a.parse::<std::net::Ipv4Addr>().is_ok()).or(internal.first()).copied()
        else {
            let seen: Vec<String> = addresses.iter().map(|(t, a)| format!("{t} {a}")).collect();
            notes.push(Note {
                at,
                message: format!(
                    "node {name} has no InternalIP ({}): not imported; add it by hand with the address to reach it",
                    if seen.is_empty() { "no addresses".to_owned() } else { seen.join(", ") }
                ),
            });
            continue;
        };
        if let Err(m) = crate::inventory::check_address(address) {
            notes.push(Note { at, message: format!("node {name}: InternalIP {m}: not imported") });
            continue;
        }
        let mut roles = Vec::new();
        let labels = item.pointer("/metadata/labels").and_then(Value::as_object);
        for key in labels.into_iter().flat_map(|l| l.keys()) {
            let Some(role) = key.strip_prefix(ROLE_LABEL) else { continue };
            match role {
                "control-plane" | "master" => roles.push(Role::ControlPlane),
                "etcd" => roles.push(Role::Etcd),
                "worker" | "node" => roles.push(Role::Worker),
                other => notes.push(Note {
                    at: at.clone(),
                    message: format!("node {name}: label {ROLE_LABEL}{other}: fleetaudit has no such role (it knows control-plane, etcd, worker)"),
                }),
            }
        }
        if roles.is_empty() {
            roles.push(Role::Worker);
        }
        roles.sort();
        roles.dedup();
        if clean != name {
            notes.push(Note { at: at.clone(), message: format!("node {name:?} imported as {clean:?}") });
        }
        hosts.push(ImportedHost {
            name: clean,
            cluster: Some(cluster.clone()),
            address: address.to_owned(),
            port: None,
            user: None,
            identity_file: None,
            jump: Vec::new(),
            roles,
            origin: at,
        });
    }
    super::finish(Imported { source: format!("`kubectl get nodes -o json` output {file}"), hosts, notes }, &file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_roles_and_what_is_not_imported() {
        let doc = r#"{
  "apiVersion": "v1",
  "items": [
    {"kind": "Node", "metadata": {"name": "cp-1", "labels": {"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/etcd": ""}},
     "status": {"addresses": [{"type": "InternalIP", "address": "fd00::1"}, {"type": "InternalIP", "address": "192.0.2.11"}, {"type": "Hostname", "address": "cp-1"}]}},
    {"kind": "Node", "metadata": {"name": "w-1", "labels": {"node-role.kubernetes.io/ingress": ""}},
     "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.21"}]}},
    {"kind": "Node", "metadata": {"name": "lost"}, "status": {"addresses": [{"type": "ExternalIP", "address": "198.51.100.1"}]}}
  ],
  "kind": "List"
}"#;
        let imp = import(Path::new("nodes.json"), doc, "prod").unwrap();
        let h: Vec<(&str, &str, &[Role])> =
            imp.hosts.iter().map(|h| (h.name.as_str(), h.address.as_str(), h.roles.as_slice())).collect();
        assert_eq!(
            h,
            [("cp-1", "192.0.2.11", &[Role::ControlPlane, Role::Etcd][..]), ("w-1", "192.0.2.21", &[Role::Worker][..])]
        );
        let n: Vec<String> = imp.notes.iter().map(ToString::to_string).collect();
        assert!(n[0].starts_with("nodes.json:6 (items[1]): node w-1: label node-role.kubernetes.io/ingress"), "{n:#?}");
        assert!(
            n[1].starts_with("nodes.json:8 (items[2]): node lost has no InternalIP (ExternalIP 198.51.100.1)"),
            "{n:#?}"
        );
        let e = import(Path::new("nodes.json"), "{\"kind\": \"Pod\"}", "prod").unwrap_err().to_string();
        assert!(e.contains("kind \"Pod\""), "{e}");
        let e = import(Path::new("nodes.json"), "{\n\"kind\": ", "prod").unwrap_err().to_string();
        assert!(e.starts_with("nodes.json:2: not JSON"), "{e}");
    }
}
