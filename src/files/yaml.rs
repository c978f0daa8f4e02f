//! YAML and JSON from a host (and from operators' inventories), read safely.
//!
//! Owns: turning the text of a config file into a [`Document`]: a tree of maps, sequences and scalars, each
//! with its 1-based line and column, built from `saphyr-parser`'s events (a maintained YAML 1.2 parser; not
//! the archived `serde_yaml`) under [`Limits`]: size, nesting depth, alias count and node count, alias
//! expansion included, all checked *before* anything is built, so a "billion laughs" file is refused after a
//! few hundred events with bounded memory, and 10,000 `[` never reach a recursion (the builder is a loop with
//! its own stack). Errors ([`YamlError`]) name the file, line and column and what to do.
//! Must not touch: the network, SSH, rules, the database. It decides no verdict: where Kubernetes and YAML 1.2
//! disagree, it exposes both readings and the caller decides per field.
//!
//! # What Kubernetes makes of a YAML file
//!
//! Read in the sources, not guessed (kubernetes/apimachinery and kubernetes/apiserver of 2026-07,
//! kubernetes-sigs/yaml of 2025-12, go-yaml's `v2` branch at 7649d45 = v2.4.0):
//!
//! - **Which parser.** Every component config fleetaudit reads (KubeletConfiguration, KubeSchedulerConfiguration,
//!   KubeProxyConfiguration, EncryptionConfiguration, AuthorizationConfiguration, admission config) is decoded by
//!   apimachinery's `runtime/serializer/json` `Serializer.Decode`: a buffer whose first non-space byte is `{`
//!   (`util/yaml.IsJSONBuffer`) goes to the JSON decoder (`sigs.k8s.io/json`, case-sensitive), anything else
//!   through `sigs.k8s.io/yaml.YAMLToJSON`, which is `go.yaml.in/yaml/v2` (the continuation of
//!   `gopkg.in/yaml.v2`: sigs.k8s.io/yaml `go.mod`, its `goyaml.v2/` is only aliases to it) unmarshalling into
//!   `interface{}`, then `encoding/json`-style decoding (`kjson.UnmarshalCaseSensitivePreserveInts`). k3s reads
//!   `config.yaml` and `config.yaml.d/*.yaml` with `gopkg.in/yaml.v2` into a `MapSlice` directly
//!   (k3s `pkg/configfilearg/parser.go`). So the YAML Kubernetes reads is **YAML 1.1 as go-yaml v2 resolves it**.
//! - **`yes`, `on`, `y` are booleans.** go-yaml v2 `resolve.go` (`resolveMapList`): plain `y Y yes Yes YES
//!   true True TRUE on On ON` are `true`, `n N no No NO false False FALSE off Off OFF` are `false`; `""`, `~`,
//!   `null`, `Null`, `NULL` are null. sigs.k8s.io/yaml's own doc says so ("literal 'yes' and 'no' strings
//!   without quotation marks will be converted to true/false implicitly", `yaml.go` `YAMLToJSON`). So in a
//!   kubelet config `enabled: yes` is `true` to the kubelet, `enabled: "yes"` is a string (the kubelet refuses
//!   the file: a string cannot decode into a bool). YAML 1.2's core schema (saphyr, [`Scalar::core`]) reads
//!   plain `yes` as the *string* "yes": the two disagree, so [`Scalar`] keeps the text, its style and tag, and
//!   offers both [`Scalar::kubernetes`] (go-yaml v2) and [`Scalar::core`] (YAML 1.2).
//! - **Numbers.** go-yaml v2 removes `_` and parses with Go's `strconv.ParseInt(s, 0, 64)`: `010` is octal 8,
//!   `0x1F`, `0o17`, `0b101` and `1_000` are integers; YAML 1.2 reads `010` as 10. Floats follow
//!   `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`; `.inf`, `.nan` are floats (which `YAMLToJSON`
//!   then cannot write as JSON: the component refuses the file). Timestamps stay strings when decoded into
//!   `interface{}` (v2 `decode.go`, "for backward compatibility reasons we set it as a string").
//! - **Tags.** A quoted scalar without a tag is a string; `!!str`, `!!int`, `!!bool`, `!!float`, `!!null`,
//!   `!!timestamp` force a type (a value that does not fit is an error: "cannot decode !!str `x` as a !!int");
//!   `!!binary` is base64-decoded; any other tag leaves the text a string.
//! - **Duplicate keys.** `YAMLToJSON` keeps the last value (v2 `decoder.mapping` sets the Go map entry per
//!   pair); `YAMLToJSONStrict` (v2 `UnmarshalStrict`, `setMapIndex`: "key already set in map") refuses them.
//!   Which one applies depends on the component: codecs built with `serializer.EnableStrict` make
//!   `Serializer.unmarshal` report a strict decoding error. kube-scheduler (`cmd/kube-scheduler/app/options/
//!   configfile.go` `loadConfig`) and kube-apiserver's encryption config (`apiserver/pkg/server/options/
//!   encryptionconfig/config.go` `loadConfig`) and authorization config (`apiserver/pkg/apis/apiserver/load`)
//!   return that error: the component does not start. The kubelet (`pkg/kubelet/kubeletconfig/util/codec`
//!   `DecodeKubeletConfiguration`) and kube-proxy (`cmd/kube-proxy/app/server.go` `loadConfig`) retry with a
//!   lenient decoder, log "using lenient decoding as strict decoding failed" and use the **last** value. k3s
//!   keeps the last value too (`readConfigFile`: `values[k] = v`). This module therefore keeps every entry in
//!   order: [`Node::get`] answers with the last (what every lenient reader sees) and [`Document::duplicates`]
//!   lists them, so the caller can say "kube-scheduler refuses this file" or "the kubelet uses line 12".
//! - **Merge keys.** go-yaml v2 implements `<<` (v2 `decoder.merge`): a plain `<<` key's mapping (or each
//!   mapping of a sequence, the first one winning) is applied where the key stands, later keys overriding
//!   earlier ones. The tree here does the same: merged entries are inserted in place, so "last wins" and
//!   "duplicate" give v2's answers (strict v2 refuses a key that a merge also sets).
//! - **Documents.** v2's `Unmarshal` reads the first document of a stream and ignores the rest (errors in
//!   later documents included); so does [`parse`], noting where a second one starts ([`Document::more`]).
//! - **Keys** are matched exactly (case-sensitively), as apimachinery's decoder matches fields
//!   (`kjson.UnmarshalCaseSensitivePreserveInts`, sigs.k8s.io/json). A key v2 resolves to a bool or number (`on:`, `1:`) becomes a JSON key string ("true", "1"); no
//!   Kubernetes config field has such a name, so [`Node::get`] compares the key's text.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use saphyr_parser::{Event, Parser, ScalarStyle};
use thiserror::Error;

/// How much of a document fleetaudit builds before refusing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of text.
    pub max_bytes: usize,
    /// Nested maps and sequences (an alias counts with the depth it is expanded to).
    pub max_depth: usize,
    /// `*alias` occurrences.
    pub max_aliases: usize,
    /// Nodes built in all, aliases' copies included.
    pub max_nodes: usize,
    /// Nodes that alias expansion may add: what bounds a "billion laughs" file.
    pub max_alias_nodes: usize,
}

impl Limits {
    /// For Kubernetes component configs read from a host. The largest real ones (a kubelet config with every
    /// field, an EncryptionConfiguration with dozens of keys) are a few KiB, nest at most ~8 deep
    /// (`resources[].providers[].aescbc.keys[].secret`) and use no anchors; these leave a wide margin and cap
    /// the tree at ~10 MB in the worst case (100,000 nodes of ~100 bytes).
    pub const CONFIG: Limits = Limits {
        max_bytes: super::MAX_FILE as usize,
        max_depth: 64,
        max_aliases: 100,
        max_nodes: 100_000,
        max_alias_nodes: 10_000,
    };
}

/// What went wrong, for callers that react differently (a too-large file is its own stored kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YamlErrorKind {
    /// Not YAML (the parser's message says why), or a merge key without a mapping.
    Syntax,
    /// Not UTF-8 (UTF-16 included: Kubernetes configs are UTF-8 in practice).
    NotUtf8,
    TooLarge,
    TooDeep,
    TooManyAliases,
    TooManyNodes,
    /// A key twice in one mapping: only from [`Document::strict`].
    DuplicateKey,
}

/// A document that could not be read, and where.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{}: {message}", self.place())]
pub struct YamlError {
    pub file: String,
    /// 1-based; 0 when the error is about the whole file (its size).
    pub line: usize,
    /// 1-based, in characters; 0 with `line` 0.
    pub column: usize,
    pub kind: YamlErrorKind,
    pub message: String,
}

impl YamlError {
    fn new(file: &str, line: usize, column: usize, kind: YamlErrorKind, message: String) -> YamlError {
        YamlError { file: file.to_owned(), line, column, kind, message }
    }

    /// `file:line:column`, or `file` for an error about the whole file.
    pub fn place(&self) -> String {
        if self.line == 0 { self.file.clone() } else { format!("{}:{}:{}", self.file, self.line, self.column) }
    }
}

/// How a scalar was written: a quoted one is a string to every schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    SingleQuoted,
    DoubleQuoted,
    Literal,
    Folded,
}

/// A scalar as written: its text after YAML's unquoting and folding, its style and its tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar {
    pub text: String,
    pub style: Style,
    /// The resolved tag: `tag:yaml.org,2002:int` for `!!int`, `!foo` for a local tag.
    pub tag: Option<String>,
}

/// A scalar's value under a schema.
#[derive(Debug, Clone, PartialEq)]
pub enum Value<'a> {
    Null,
    Bool(bool),
    /// Wide enough for go-yaml v2's uint64 as well as int64.
    Int(i128),
    Float(f64),
    Str(Cow<'a, str>),
}

impl fmt::Display for Value<'_> {
    /// As JSON would print it (a string unquoted): what evidence shows.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => f.write_str("null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Str(s) => f.write_str(s),
        }
    }
}

const CORE: &str = "tag:yaml.org,2002:";

impl Scalar {
    /// Plain and untagged: the only form schemas resolve by content.
    pub fn is_plain(&self) -> bool {
        self.style == Style::Plain && self.tag.is_none()
    }

    /// The value under YAML 1.2's core schema, as saphyr resolves it: `yes`/`on` are strings, `010` is 10.
    /// `Err` when a core tag does not fit (`!!int abc`).
    pub fn core(&self) -> Result<Value<'_>, String> {
        use saphyr_parser::Tag;
        let tag = self.tag.as_ref().map(|t| match t.strip_prefix(CORE) {
            Some(suffix) => Cow::Owned(Tag { handle: CORE.into(), suffix: suffix.into() }),
            None => Cow::Owned(Tag { handle: String::new(), suffix: t.clone() }),
        });
        let style = match self.style {
            Style::Plain => ScalarStyle::Plain,
            Style::SingleQuoted => ScalarStyle::SingleQuoted,
            Style::DoubleQuoted => ScalarStyle::DoubleQuoted,
            Style::Literal => ScalarStyle::Literal,
            Style::Folded => ScalarStyle::Folded,
        };
        match saphyr::Scalar::parse_from_cow_and_metadata(Cow::Borrowed(&self.text), style, tag.as_ref()) {
            Some(saphyr::Scalar::Null) => Ok(Value::Null),
            Some(saphyr::Scalar::Boolean(b)) => Ok(Value::Bool(b)),
            Some(saphyr::Scalar::Integer(i)) => Ok(Value::Int(i.into())),
            Some(saphyr::Scalar::FloatingPoint(x)) => Ok(Value::Float(x.into_inner())),
            Some(saphyr::Scalar::String(s)) => Ok(Value::Str(s)),
            None => Err(format!("{:?} is not a valid {}", self.text, self.tag.as_deref().unwrap_or("scalar"))),
        }
    }

    /// The value as Kubernetes reads it: go-yaml v2 (YAML 1.1) `resolve`, then `sigs.k8s.io/yaml`'s JSON
    /// conversion (see the module doc). `Err` is a value the component itself refuses (a tag that does not
    /// fit, bad `!!binary`), with go-yaml's words.
    pub fn kubernetes(&self) -> Result<Value<'_>, String> {
        let short =
            self.tag.as_deref().map(|t| t.strip_prefix(CORE).map_or(Cow::Borrowed(t), |s| format!("!!{s}").into()));
        let tag = short.as_deref().unwrap_or("");
        if tag.is_empty() && self.style != Style::Plain {
            return Ok(Value::Str(Cow::Borrowed(&self.text)));
        }
        match tag {
            "" | "!!str" | "!!bool" | "!!int" | "!!float" | "!!null" | "!!timestamp" => {}
            "!!binary" => {
                use base64::Engine as _;
                let clean: String = self.text.chars().filter(|c| *c != '\n' && *c != '\r').collect();
                let bytes = base64::engine::general_purpose::STANDARD
                    .decode(clean)
                    .map_err(|_| "!!binary value contains invalid base64 data".to_owned())?;
                return String::from_utf8(bytes)
                    .map(|s| Value::Str(Cow::Owned(s)))
                    .map_err(|_| "!!binary value is not UTF-8 text".to_owned());
            }
            // Any other tag (a local `!foo`, `!!merge` on a value): go-yaml keeps the text.
            _ => return Ok(Value::Str(Cow::Borrowed(&self.text))),
        }
        let (rtag, value) = resolve_v2(tag, &self.text);
        match (tag, rtag) {
            ("" | "!!str", _) => Ok(value),
            (t, r) if t == r => Ok(value),
            ("!!float", "!!int") => match value {
                Value::Int(i) => Ok(Value::Float(i as f64)),
                other => Ok(other),
            },
            (t, r) => Err(format!("cannot decode {r} `{}` as a {t}", self.text)),
        }
    }
}

/// go-yaml v2's `resolve(tag, in)` (resolve.go), for a value going into `interface{}`: the resolved short tag
/// and value. Timestamps come back as their text (v2 `decoder.scalar`).
fn resolve_v2<'a>(tag: &str, text: &'a str) -> (&'static str, Value<'a>) {
    let s = Value::Str(Cow::Borrowed(text));
    if tag == "!!str" {
        return ("!!str", s);
    }
    match text {
        "y" | "Y" | "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return ("!!bool", Value::Bool(true));
        }
        "n" | "N" | "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return ("!!bool", Value::Bool(false));
        }
        "" | "~" | "null" | "Null" | "NULL" => return ("!!null", Value::Null),
        ".nan" | ".NaN" | ".NAN" => return ("!!float", Value::Float(f64::NAN)),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return ("!!float", Value::Float(f64::INFINITY)),
        "-.inf" | "-.Inf" | "-.INF" => return ("!!float", Value::Float(f64::NEG_INFINITY)),
        "<<" => return ("!!merge", s),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if first == b'.' {
        if let Some(x) = go_parse_float(text) {
            return ("!!float", Value::Float(x));
        }
    } else if first.is_ascii_digit() || first == b'+' || first == b'-' {
        if (tag.is_empty() || tag == "!!timestamp") && looks_like_timestamp(text) {
            return ("!!timestamp", s);
        }
        let plain = text.replace('_', "");
        if let Some(i) = go_parse_int(&plain) {
            return ("!!int", Value::Int(i));
        }
        if is_yaml_style_float(&plain)
            && let Ok(x) = plain.parse::<f64>()
        {
            return ("!!float", Value::Float(x));
        }
    }
    ("!!str", s)
}

/// Go's `strconv.ParseInt(s, 0, 64)`, falling back to `ParseUint` (what v2 tries in turn): an optional sign,
/// then `0x`, `0o`, `0b`, a leading `0` (octal) or decimal digits; the result within int64 or uint64.
fn go_parse_int(s: &str) -> Option<i128> {
    let (neg, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let lower = body.get(..2).map(str::to_ascii_lowercase);
    let (radix, digits) = match lower.as_deref() {
        Some("0x") => (16, &body[2..]),
        Some("0o") => (8, &body[2..]),
        Some("0b") => (2, &body[2..]),
        _ if body.len() > 1 && body.starts_with('0') => (8, &body[1..]),
        _ => (10, body),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u128::from_str_radix(digits, radix).ok()?;
    if neg {
        (magnitude <= 1u128 << 63).then(|| -(magnitude as i128))
    } else {
        // Positive with a `+` is ParseInt only (ParseUint takes no sign): within int64.
        let max = if s.starts_with('+') { i64::MAX as u128 } else { u64::MAX as u128 };
        (magnitude <= max).then_some(magnitude as i128)
    }
}

/// v2's `yamlStyleFloat`: `^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$`.
fn is_yaml_style_float(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(matches!(b.first(), Some(b'-' | b'+')));
    let digits = |i: &mut usize| {
        let start = *i;
        while *i < b.len() && b[*i].is_ascii_digit() {
            *i += 1;
        }
        *i - start
    };
    if b.get(i) == Some(&b'.') {
        i += 1;
        if digits(&mut i) == 0 {
            return false;
        }
    } else {
        if digits(&mut i) == 0 {
            return false;
        }
        if b.get(i) == Some(&b'.') {
            i += 1;
            digits(&mut i);
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'-' | b'+')) {
            i += 1;
        }
        if digits(&mut i) == 0 {
            return false;
        }
    }
    i == b.len()
}

/// Go's `strconv.ParseFloat` for what v2 hands it after a leading `.`: decimal digits and an exponent.
fn go_parse_float(s: &str) -> Option<f64> {
    is_yaml_style_float(s).then(|| s.parse().ok()).flatten()
}

/// v2's `parseTimestamp` quick check and formats: `YYYY-M-D`, optionally `T`/`t`/space and `H:M:S` with a
/// fraction and zone. Whether a value is one only matters with an explicit `!!timestamp` (otherwise both
/// readings give the text).
fn looks_like_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 8 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'-' {
        return false;
    }
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let parts: Vec<&str> = date.split('-').collect();
    let num = |p: &str, max: usize| !p.is_empty() && p.len() <= max && p.bytes().all(|c| c.is_ascii_digit());
    if parts.len() != 3 || !num(parts[0], 4) || !num(parts[1], 2) || !num(parts[2], 2) {
        return false;
    }
    match time {
        None => true,
        Some(t) => {
            let hms: Vec<&str> = t.splitn(3, ':').collect();
            hms.len() == 3
                && num(hms[0], 2)
                && num(hms[1], 2)
                && hms[2].bytes().next().is_some_and(|c| c.is_ascii_digit())
        }
    }
}

/// A node of the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// Entries in document order, duplicates and merged (`<<`) entries included: see [`Node::get`].
    Map(Vec<Entry>),
    Seq(Vec<Node>),
    Scalar(Scalar),
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: Node,
    pub value: Node,
    /// Brought by a merge key (`<<: *base`) rather than written in this mapping.
    pub merged: bool,
}

/// A node and where it was written (an alias's copy keeps its anchor's places).
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// 1-based.
    pub line: usize,
    /// 1-based, in characters.
    pub column: usize,
    pub data: Data,
}

impl Node {
    pub fn line(&self) -> usize {
        self.line
    }

    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.data {
            Data::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.data {
            Data::Seq(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_scalar(&self) -> Option<&Scalar> {
        match &self.data {
            Data::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// A scalar's text (`None` for a map or sequence).
    pub fn text(&self) -> Option<&str> {
        self.as_scalar().map(|s| s.text.as_str())
    }

    /// Null in every schema: an empty plain scalar, `~`, `null`, `Null`, `NULL` (or `!!null`).
    pub fn is_null(&self) -> bool {
        self.as_scalar().is_some_and(|s| matches!(s.core(), Ok(Value::Null)))
    }

    /// The value of `key` in a mapping: the **last** entry with that key (what go-yaml v2 and every lenient
    /// Kubernetes reader keep; see [`Document::duplicates`] for the strict ones).
    pub fn key(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().rev().find(|e| e.key.text() == Some(key)).map(|e| &e.value)
    }

    /// A path of keys and sequence indexes: `["authentication", "anonymous", "enabled"]`,
    /// `["resources", "0", "providers"]`. For keys that contain dots (`memory.available`).
    pub fn get_path(&self, path: &[&str]) -> Option<&Node> {
        let mut node = self;
        for seg in path {
            node = match &node.data {
                Data::Map(_) => node.key(seg)?,
                Data::Seq(items) => items.get(seg.parse::<usize>().ok()?)?,
                Data::Scalar(_) => return None,
            };
        }
        Some(node)
    }

    /// `authentication.anonymous.enabled`, `resources.0.providers`: [`Node::get_path`] split on dots.
    pub fn get(&self, dotted: &str) -> Option<&Node> {
        self.get_path(&dotted.split('.').collect::<Vec<_>>())
    }

    fn duplicates_into(&self, path: &str, out: &mut Vec<Duplicate>) {
        match &self.data {
            Data::Map(entries) => {
                let mut here: Vec<Duplicate> = Vec::new();
                let mut seen: HashMap<&str, usize> = HashMap::new();
                for e in entries {
                    let Some(name) = e.key.text() else { continue };
                    let i = *seen.entry(name).or_insert_with(|| {
                        here.push(Duplicate { path: join(path, name), lines: Vec::new(), merged: 0 });
                        here.len() - 1
                    });
                    here[i].lines.push(e.key.line);
                    here[i].merged += usize::from(e.merged);
                }
                out.extend(here.into_iter().filter(|d| d.lines.len() > 1));
                for e in entries {
                    e.value.duplicates_into(&join(path, e.key.text().unwrap_or("?")), out);
                }
            }
            Data::Seq(items) => {
                for (i, v) in items.iter().enumerate() {
                    v.duplicates_into(&join(path, &i.to_string()), out);
                }
            }
            Data::Scalar(_) => {}
        }
    }
}

fn join(path: &str, seg: &str) -> String {
    if path.is_empty() { seg.to_owned() } else { format!("{path}.{seg}") }
}

/// A key written more than once in one mapping (a merge counts as writing its keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    /// Dotted, from the root: `authentication.anonymous.enabled`.
    pub path: String,
    /// Where each occurrence is, in document order; the last is the one lenient readers use.
    pub lines: Vec<usize>,
    /// How many of them a merge key brought: YAML 1.1 readers other than strict go-yaml (PyYAML, so Ansible)
    /// let a written key override a merged one; only `lines.len() - merged > 1` is a key written twice.
    pub merged: usize,
}

/// The first document of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    pub file: String,
    /// An empty file is a null scalar at line 1.
    pub root: Node,
    /// The line where a second document starts (`---`): Kubernetes' go-yaml v2 reads only the first.
    pub more: Option<usize>,
    /// The text starts (after white space) with `{`: Kubernetes then decodes it as JSON, not YAML
    /// (apimachinery `util/yaml.IsJSONBuffer`), and [`parse_kubernetes`] holds it to JSON's syntax.
    pub json: bool,
}

impl Document {
    /// Keys written twice in one mapping, in document order.
    pub fn duplicates(&self) -> Vec<Duplicate> {
        let mut out = Vec::new();
        self.root.duplicates_into("", &mut out);
        out
    }

    /// Refuses a document with a duplicate key, as strict Kubernetes decoders do (kube-scheduler, the API
    /// server's encryption and authorization configs): the error names the second occurrence.
    pub fn strict(&self) -> Result<(), YamlError> {
        match self.duplicates().into_iter().next() {
            None => Ok(()),
            Some(d) => Err(YamlError::new(
                &self.file,
                d.lines[1],
                1,
                YamlErrorKind::DuplicateKey,
                format!(
                    "{} is set {} times (lines {}): a strict Kubernetes decoder refuses the file; keep one",
                    d.path,
                    d.lines.len(),
                    d.lines.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                ),
            )),
        }
    }
}

/// Parses bytes from a host: refuses what is not UTF-8 (naming the line), then [`parse`].
pub fn parse_bytes(file: &str, bytes: &[u8], limits: &Limits) -> Result<Document, YamlError> {
    if bytes.len() > limits.max_bytes {
        return Err(too_large(file, bytes.len(), limits));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let good = &bytes[..e.valid_up_to()];
        let line = good.iter().filter(|b| **b == b'\n').count() + 1;
        let start = good.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let column = String::from_utf8_lossy(&good[start..]).chars().count() + 1;
        let utf16 = bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]);
        YamlError::new(
            file,
            line,
            column,
            YamlErrorKind::NotUtf8,
            if utf16 {
                "UTF-16 text: fleetaudit reads UTF-8 config files; convert it (iconv -f UTF-16 -t UTF-8)".into()
            } else {
                "not UTF-8 text: a config file this is not; check what the path names".into()
            },
        )
    })?;
    parse(file, text, limits)
}

/// As Kubernetes decodes a component config: text starting with `{` must be JSON (the component's JSON
/// decoder refuses anything else, comments and YAML's plain `yes` included), then the YAML reading of
/// [`parse`], whose scalars the caller reads with [`Scalar::kubernetes`].
pub fn parse_kubernetes(file: &str, bytes: &[u8], limits: &Limits) -> Result<Document, YamlError> {
    let doc = parse_bytes(file, bytes, limits)?;
    if doc.json {
        // Syntax only: serde_json's own recursion limit (128) is above ours, which `parse` already applied.
        serde_json::from_slice::<serde::de::IgnoredAny>(bytes).map_err(|e| {
            YamlError::new(
                file,
                e.line(),
                e.column(),
                YamlErrorKind::Syntax,
                format!("{e}: the file starts with '{{', so Kubernetes reads it as JSON, and it is not valid JSON"),
            )
        })?;
    }
    Ok(doc)
}

fn too_large(file: &str, len: usize, limits: &Limits) -> YamlError {
    YamlError::new(
        file,
        0,
        0,
        YamlErrorKind::TooLarge,
        format!("{len} bytes, more than the {} a config file may have: refused unread", limits.max_bytes),
    )
}

/// A map or sequence being built.
struct Frame {
    line: usize,
    column: usize,
    anchor: usize,
    /// Nodes inside, itself included.
    nodes: usize,
    /// 1 + the tallest child's height (a scalar's is 0).
    height: usize,
    kind: FrameKind,
}

enum FrameKind {
    Seq(Vec<Node>),
    Map(Vec<Entry>, Option<Node>),
}

/// An anchored node, kept to copy at each alias.
struct Anchored {
    node: Node,
    nodes: usize,
    height: usize,
}

struct Builder<'a> {
    file: &'a str,
    limits: &'a Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    root: Option<Node>,
    nodes: usize,
    alias_nodes: usize,
    aliases: usize,
}

impl Builder<'_> {
    fn err(&self, line: usize, column: usize, kind: YamlErrorKind, message: String) -> YamlError {
        YamlError::new(self.file, line, column, kind, message)
    }

    fn count(&mut self, n: usize, line: usize, column: usize) -> Result<(), YamlError> {
        self.nodes += n;
        if self.nodes > self.limits.max_nodes {
            return Err(self.err(
                line,
                column,
                YamlErrorKind::TooManyNodes,
                format!("more than {} nodes: not a config file fleetaudit reads", self.limits.max_nodes),
            ));
        }
        Ok(())
    }

    fn open(&mut self, line: usize, column: usize, anchor: usize, kind: FrameKind) -> Result<(), YamlError> {
        if self.stack.len() + 1 > self.limits.max_depth {
            return Err(self.err(
                line,
                column,
                YamlErrorKind::TooDeep,
                format!("nested more than {} deep: refused rather than read", self.limits.max_depth),
            ));
        }
        self.count(1, line, column)?;
        self.stack.push(Frame { line, column, anchor, nodes: 1, height: 1, kind });
        Ok(())
    }

    fn close(&mut self) -> Result<(), YamlError> {
        let Some(f) = self.stack.pop() else { return Ok(()) };
        let data = match f.kind {
            FrameKind::Seq(items) => Data::Seq(items),
            FrameKind::Map(entries, _) => Data::Map(entries),
        };
        self.complete(Node { line: f.line, column: f.column, data }, f.anchor, f.nodes, f.height)
    }

    fn alias(&mut self, id: usize, line: usize, column: usize) -> Result<(), YamlError> {
        self.aliases += 1;
        if self.aliases > self.limits.max_aliases {
            return Err(self.err(
                line,
                column,
                YamlErrorKind::TooManyAliases,
                format!("more than {} aliases (*name): refused rather than expanded", self.limits.max_aliases),
            ));
        }
        let Some(a) = self.anchors.get(&id) else {
            return Err(self.err(line, column, YamlErrorKind::Syntax, "an alias to an unknown anchor".into()));
        };
        let (nodes, height) = (a.nodes, a.height);
        if self.alias_nodes + nodes > self.limits.max_alias_nodes {
            return Err(self.err(
                line,
                column,
                YamlErrorKind::TooManyNodes,
                format!(
                    "aliases would expand to more than {} nodes (a \"billion laughs\" document): refused rather \
                     than expanded",
                    self.limits.max_alias_nodes
                ),
            ));
        }
        if self.stack.len() + height > self.limits.max_depth {
            return Err(self.err(
                line,
                column,
                YamlErrorKind::TooDeep,
                format!("this alias nests more than {} deep: refused rather than expanded", self.limits.max_depth),
            ));
        }
        self.alias_nodes += nodes;
        self.count(nodes, line, column)?;
        let node = self.anchors[&id].node.clone();
        self.complete(node, 0, nodes, height)
    }

    fn complete(&mut self, node: Node, anchor: usize, nodes: usize, height: usize) -> Result<(), YamlError> {
        if anchor != 0 {
            self.anchors.insert(anchor, Anchored { node: node.clone(), nodes, height });
        }
        let Some(parent) = self.stack.last_mut() else {
            self.root = Some(node);
            return Ok(());
        };
        parent.nodes += nodes;
        parent.height = parent.height.max(height + 1);
        match &mut parent.kind {
            FrameKind::Seq(items) => items.push(node),
            FrameKind::Map(_, key @ None) => *key = Some(node),
            FrameKind::Map(entries, key @ Some(_)) => {
                let k = key.take().expect("matched Some");
                if is_merge(&k) {
                    merge(self.file, entries, node)?;
                } else {
                    entries.push(Entry { key: k, value: node, merged: false });
                }
            }
        }
        Ok(())
    }
}

/// go-yaml v2's `isMerge`: a plain `<<` (or one tagged `!!merge`).
fn is_merge(key: &Node) -> bool {
    key.as_scalar()
        .is_some_and(|s| s.text == "<<" && (s.is_plain() || s.tag.as_deref() == Some("tag:yaml.org,2002:merge")))
}

/// v2's `decoder.merge`: a mapping's entries where the key stands; a sequence's mappings last to first, so
/// that the first wins.
fn merge(file: &str, entries: &mut Vec<Entry>, value: Node) -> Result<(), YamlError> {
    let refuse = |n: &Node| {
        YamlError::new(
            file,
            n.line,
            n.column,
            YamlErrorKind::Syntax,
            "a merge key (<<) takes a mapping or a list of mappings (go-yaml refuses anything else)".into(),
        )
    };
    match value.data {
        Data::Map(m) => entries.extend(m.into_iter().map(|e| Entry { merged: true, ..e })),
        Data::Seq(items) => {
            if let Some(bad) = items.iter().find(|n| n.as_map().is_none()) {
                return Err(refuse(bad));
            }
            for item in items.into_iter().rev() {
                if let Data::Map(m) = item.data {
                    entries.extend(m.into_iter().map(|e| Entry { merged: true, ..e }));
                }
            }
        }
        Data::Scalar(_) => return Err(refuse(&value)),
    }
    Ok(())
}

/// Parses the first document of `text`, within `limits`. `file` names it in errors.
pub fn parse(file: &str, text: &str, limits: &Limits) -> Result<Document, YamlError> {
    if text.len() > limits.max_bytes {
        return Err(too_large(file, text.len(), limits));
    }
    let mut b = Builder {
        file,
        limits,
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        nodes: 0,
        alias_nodes: 0,
        aliases: 0,
    };
    let mut more = None;
    let last_line = text.split('\n').count();
    for ev in Parser::new_from_str(text) {
        let (ev, span) = ev.map_err(|e| {
            let (line, column) = (e.marker().line(), e.marker().col() + 1);
            // saphyr's scanner stops at 255 flow levels while looking ahead, before our own count sees them.
            if e.info().contains("recursion limit") {
                let message = "nested too deep (past 255 levels, where the parser stops): refused rather than read";
                return YamlError::new(file, line, column, YamlErrorKind::TooDeep, message.into());
            }
            YamlError::new(file, line, column, YamlErrorKind::Syntax, format!("YAML: {}", e.info()))
        })?;
        // An empty value at the end of the text (`?` then a comment, no newline) is placed past its last line.
        let (line, column) = (span.start.line().min(last_line), span.start.col() + 1);
        match ev {
            Event::DocumentStart(_) if b.root.is_some() => {
                more = Some(line);
                break;
            }
            Event::Scalar(text, style, anchor, tag) => {
                b.count(1, line, column)?;
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted => Style::SingleQuoted,
                    ScalarStyle::DoubleQuoted => Style::DoubleQuoted,
                    ScalarStyle::Literal => Style::Literal,
                    ScalarStyle::Folded => Style::Folded,
                };
                let tag = tag.map(|t| format!("{}{}", t.handle, t.suffix));
                let node = Node { line, column, data: Data::Scalar(Scalar { text: text.into_owned(), style, tag }) };
                b.complete(node, anchor, 1, 0)?;
            }
            Event::SequenceStart(anchor, _) => b.open(line, column, anchor, FrameKind::Seq(Vec::new()))?,
            Event::MappingStart(anchor, _) => b.open(line, column, anchor, FrameKind::Map(Vec::new(), None))?,
            Event::SequenceEnd | Event::MappingEnd => b.close()?,
            Event::Alias(id) => b.alias(id, line, column)?,
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentStart(_) | Event::DocumentEnd => {}
        }
    }
    let root = b.root.take().unwrap_or(Node {
        line: 1,
        column: 1,
        data: Data::Scalar(Scalar { text: String::new(), style: Style::Plain, tag: None }),
    });
    let json = text.trim_start().starts_with('{');
    Ok(Document { file: file.to_owned(), root, more, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(text: &str) -> Document {
        parse("t.yaml", text, &Limits::CONFIG).unwrap()
    }

    fn err(text: &str) -> YamlError {
        parse("t.yaml", text, &Limits::CONFIG).unwrap_err()
    }

    fn k8s<'a>(d: &'a Document, path: &str) -> Value<'a> {
        d.root.get(path).and_then(Node::as_scalar).unwrap_or_else(|| panic!("{path} missing")).kubernetes().unwrap()
    }

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/tests/fixtures/k8s/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    fn real(name: &str) -> Document {
        parse_kubernetes(name, &fixture(name), &Limits::CONFIG).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn real_kubernetes_configs() {
        let d = real("kubeadm-kubelet-config.yaml");
        assert_eq!(k8s(&d, "authentication.anonymous.enabled"), Value::Bool(false));
        assert_eq!(k8s(&d, "authorization.mode"), Value::Str("Webhook".into()));
        assert_eq!(d.root.get("authentication.anonymous.enabled").unwrap().line, 4);
        assert_eq!(k8s(&d, "healthzPort"), Value::Int(10248));
        assert_eq!(k8s(&d, "clusterDNS.0"), Value::Str("10.96.0.10".into()));
        assert_eq!(k8s(&d, "containerRuntimeEndpoint"), Value::Str("".into()), "a quoted empty string is no null");
        assert_eq!(d.root.get("memorySwap").and_then(Node::as_map).map(<[_]>::len), Some(0));
        assert!(d.root.get("readOnlyPort").is_none(), "kubeadm leaves it to the v1beta1 default");
        assert!((d.more, d.json, d.duplicates().is_empty()) == (None, false, true));

        let d = real("eks-kubelet-config.json");
        assert!(d.json);
        assert_eq!(k8s(&d, "readOnlyPort"), Value::Int(0));
        assert_eq!(k8s(&d, "authentication.webhook.enabled"), Value::Bool(true));
        assert_eq!(k8s(&d, "featureGates.RotateKubeletServerCertificate"), Value::Bool(true));
        assert_eq!(d.root.get("tlsCipherSuites").and_then(Node::as_seq).map(<[_]>::len), Some(8));
        assert_eq!(d.root.get("authentication.anonymous.enabled").unwrap().line, 7);

        let d = real("encryption-config.yaml");
        let providers = d.root.get("resources.0.providers").and_then(Node::as_seq).unwrap();
        let names: Vec<&str> = providers.iter().filter_map(|p| p.as_map()?.first()?.key.text()).collect();
        assert_eq!(names, ["identity", "aesgcm", "aescbc", "secretbox"], "provider order decides CIS 1.2.28");
        let secret = d.root.get("resources.0.providers.1.aesgcm.keys.0.secret").unwrap();
        assert_eq!((secret.text(), secret.line), (Some("c2VjcmV0IGlzIHNlY3VyZQ=="), 22));
        assert_eq!(k8s(&d, "resources.2.resources.0"), Value::Str("*.apps".into()));

        let d = real("authorization-config.yaml");
        let types: Vec<&str> = d
            .root
            .get("authorizers")
            .and_then(Node::as_seq)
            .unwrap()
            .iter()
            .filter_map(|a| a.get("type")?.text())
            .collect();
        assert_eq!(types, ["Webhook", "Node", "RBAC"]);
        assert_eq!(
            k8s(&d, "authorizers.0.webhook.matchConditions.2.expression"),
            Value::Str("!('system:serviceaccounts:kube-system' in request.groups)".into())
        );

        let d = real("kube-scheduler-config.yaml");
        assert_eq!(k8s(&d, "leaderElection.leaderElect"), Value::Bool(true));
        assert_eq!(k8s(&d, "profiles.1.plugins.score.disabled.0.name"), Value::Str("*".into()));
        assert_eq!(k8s(&d, "profiles.0.plugins.score.enabled.0.weight"), Value::Int(2));

        let d = real("kube-proxy-config.conf");
        assert_eq!(k8s(&d, "conntrack.maxPerCore"), Value::Null);
        assert!(d.root.get("conntrack.maxPerCore").unwrap().is_null());
        assert_eq!(k8s(&d, "enableProfiling"), Value::Bool(false));
        assert_eq!(k8s(&d, "metricsBindAddress"), Value::Str("".into()));

        let d = real("k3s-config.yaml");
        assert_eq!(k8s(&d, "write-kubeconfig-mode"), Value::Str("0600".into()), "quoted: not octal 384");
        assert_eq!(k8s(&d, "protect-kernel-defaults"), Value::Bool(true));
        assert_eq!(d.root.get("kube-apiserver-arg").and_then(Node::as_seq).map(<[_]>::len), Some(7));
        let keys: Vec<&str> = d.root.as_map().unwrap().iter().filter_map(|e| e.key.text()).collect();
        assert_eq!(keys[..3], ["write-kubeconfig-mode", "tls-san", "node-label"], "k3s turns keys into flags in order");

        let d = real("etcd.conf.yml");
        assert!(d.root.get("wal-dir").unwrap().is_null());
        assert_eq!(k8s(&d, "client-transport-security.client-cert-auth"), Value::Bool(true));
        assert_eq!(k8s(&d, "log-outputs.0"), Value::Str("stderr".into()));
    }

    #[test]
    fn booleans_as_kubernetes_and_as_yaml_1_2_read_them() {
        // (text, go-yaml v2 / Kubernetes, YAML 1.2 core / saphyr)
        let s = |t: &str| Value::Str(t.to_owned().into());
        let table: Vec<(&str, Value, Value)> = vec![
            ("yes", Value::Bool(true), s("yes")),
            ("Yes", Value::Bool(true), s("Yes")),
            ("on", Value::Bool(true), s("on")),
            ("ON", Value::Bool(true), s("ON")),
            ("y", Value::Bool(true), s("y")),
            ("no", Value::Bool(false), s("no")),
            ("off", Value::Bool(false), s("off")),
            ("n", Value::Bool(false), s("n")),
            ("true", Value::Bool(true), Value::Bool(true)),
            ("False", Value::Bool(false), Value::Bool(false)),
            ("yEs", s("yEs"), s("yEs")),
            ("\"yes\"", s("yes"), s("yes")),
            ("'on'", s("on"), s("on")),
            ("!!str yes", s("yes"), s("yes")),
            ("!!bool yes", Value::Bool(true), s("yes")), // core: `!!bool yes` does not fit: see below
            ("~", Value::Null, Value::Null),
            ("null", Value::Null, Value::Null),
            ("", Value::Null, Value::Null),
            ("\"\"", s(""), s("")),
        ];
        for (text, kube, core) in table {
            let d = doc(&format!("enabled: {text}\n"));
            let sc = d.root.key("enabled").unwrap().as_scalar().unwrap();
            assert_eq!(sc.kubernetes().unwrap(), kube, "kubernetes({text:?})");
            if text == "!!bool yes" {
                assert!(sc.core().is_err(), "YAML 1.2 has no `yes` boolean");
            } else {
                assert_eq!(sc.core().unwrap(), core, "core({text:?})");
            }
        }
    }

    #[test]
    fn numbers_and_tags_as_go_yaml_v2_resolves_them() {
        let s = |t: &str| Value::Str(t.to_owned().into());
        let table: Vec<(&str, Result<Value, ()>)> = vec![
            ("10250", Ok(Value::Int(10250))),
            ("010", Ok(Value::Int(8))),
            ("0o17", Ok(Value::Int(15))),
            ("0x1F", Ok(Value::Int(31))),
            ("-0x10", Ok(Value::Int(-16))),
            ("0b101", Ok(Value::Int(5))),
            ("+12", Ok(Value::Int(12))),
            ("1_000", Ok(Value::Int(1000))),
            ("09", Ok(Value::Float(9.0))),
            ("9223372036854775808", Ok(Value::Int(9_223_372_036_854_775_808))),
            ("-9223372036854775808", Ok(Value::Int(i64::MIN as i128))),
            ("18446744073709551616", Ok(Value::Float(18_446_744_073_709_551_616.0))),
            ("1.5", Ok(Value::Float(1.5))),
            ("1e3", Ok(Value::Float(1000.0))),
            (".5", Ok(Value::Float(0.5))),
            ("-.inf", Ok(Value::Float(f64::NEG_INFINITY))),
            ("5m0s", Ok(s("5m0s"))),
            ("0s", Ok(s("0s"))),
            ("2001-12-14", Ok(s("2001-12-14"))),
            ("10.96.0.10", Ok(s("10.96.0.10"))),
            ("0x", Ok(s("0x"))),
            ("+", Ok(s("+"))),
            ("\"10250\"", Ok(s("10250"))),
            ("!!str 10250", Ok(s("10250"))),
            ("!!int \"12\"", Ok(Value::Int(12))),
            ("!!float 1", Ok(Value::Float(1.0))),
            ("!!int yes", Err(())),
            ("!!bool 1", Err(())),
            ("!!timestamp 2001-12-14", Ok(s("2001-12-14"))),
            ("!!timestamp nope", Err(())),
            ("!!binary aGVsbG8=", Ok(s("hello"))),
            ("!!binary \"***\"", Err(())),
            ("!local 12", Ok(s("12"))),
        ];
        for (text, want) in table {
            let d = doc(&format!("v: {text}\n"));
            let got = d.root.key("v").unwrap().as_scalar().unwrap().kubernetes();
            assert_eq!(got.map_err(|_| ()), want, "kubernetes({text:?})");
        }
        let e = doc("v: !!int yes\n").root.key("v").unwrap().as_scalar().unwrap().kubernetes().unwrap_err();
        assert_eq!(e, "cannot decode !!bool `yes` as a !!int", "go-yaml's own words");
    }

    #[test]
    fn duplicate_keys_last_wins_and_are_listed() {
        let d =
            doc("authentication:\n  anonymous:\n    enabled: false\n    enabled: true\nport: 1\nport: 2\nport: 3\n");
        assert_eq!(k8s(&d, "authentication.anonymous.enabled"), Value::Bool(true), "the lenient readers' answer");
        assert_eq!(k8s(&d, "port"), Value::Int(3));
        assert_eq!(
            d.duplicates(),
            vec![
                Duplicate { path: "port".into(), lines: vec![5, 6, 7], merged: 0 },
                Duplicate { path: "authentication.anonymous.enabled".into(), lines: vec![3, 4], merged: 0 },
            ]
        );
        let e = d.strict().unwrap_err();
        assert_eq!((e.kind, e.line), (YamlErrorKind::DuplicateKey, 6));
        assert!(e.to_string().starts_with("t.yaml:6:1: port is set 3 times (lines 5, 6, 7)"), "{e}");
        assert!(doc("a: 1\nb: {a: 2}\n").strict().is_ok(), "the same key in two mappings is no duplicate");
        // In JSON too (Kubernetes' JSON decoder: last wins, strict refuses).
        let d = parse_kubernetes("k.json", b"{\"a\": 1, \"a\": 2}", &Limits::CONFIG).unwrap();
        assert_eq!((k8s(&d, "a"), d.duplicates().len()), (Value::Int(2), 1));
    }

    #[test]
    fn merge_keys_as_go_yaml_v2_applies_them() {
        let d = doc(
            "base: &b {a: 1, b: 2}\nx:\n  <<: *b\n  b: 3\ny:\n  b: 0\n  <<: *b\nz:\n  <<: [{a: first}, {a: second, c: 4}]\n\
                     q:\n  '<<': {a: 1}\n",
        );
        assert_eq!((k8s(&d, "x.a"), k8s(&d, "x.b")), (Value::Int(1), Value::Int(3)), "a later key overrides");
        assert_eq!(k8s(&d, "y.b"), Value::Int(2), "v2 applies a merge where it stands: it overrides earlier keys");
        assert_eq!((k8s(&d, "z.a"), k8s(&d, "z.c")), (Value::Str("first".into()), Value::Int(4)), "the first wins");
        assert!(d.root.get("q.a").is_none() && d.root.get("q.<<").is_some(), "a quoted << is a plain key");
        let dups: Vec<(String, usize, usize)> =
            d.duplicates().into_iter().map(|d| (d.path, d.lines.len(), d.merged)).collect();
        let want = [("x.b", 2, 1), ("y.b", 2, 1), ("z.a", 2, 2)].map(|(p, n, m)| (p.to_owned(), n, m));
        assert_eq!(dups, want, "strict v2 refuses a key a merge also sets");
        assert_eq!(d.root.get("x.a").unwrap().line, 1, "merged nodes keep the place they were written");
        for bad in ["a:\n  <<: 1\n", "a:\n  <<: [1]\n", "a:\n  <<: ~\n"] {
            let e = err(bad);
            assert!(e.kind == YamlErrorKind::Syntax && e.message.contains("merge key"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn only_the_first_document_counts() {
        let d = doc("a: 1\n---\na: 2\n: : bad [\n");
        assert_eq!((k8s(&d, "a"), d.more), (Value::Int(1), Some(2)), "go-yaml v2 never reads the second");
        let d = doc("---\na: 1\n...\n");
        assert_eq!(d.more, None);
        for empty in ["", "# only a comment\n", "---\n"] {
            let d = doc(empty);
            assert!(d.root.is_null(), "{empty:?}");
        }
    }

    #[test]
    fn errors_name_the_file_line_and_column() {
        let e = err("a: 1\nb: [1, 2\nc: 3\n");
        assert_eq!(e.kind, YamlErrorKind::Syntax);
        assert!(e.to_string().starts_with("t.yaml:") && e.message.starts_with("YAML: "), "{e}");
        assert!(e.line >= 2, "{e}");
        let e = err("a: 1\n  b: 2\n");
        assert_eq!((e.line, e.kind), (2, YamlErrorKind::Syntax), "{e}");
        let e = err("a: *nowhere\n");
        assert_eq!(e.line, 1, "{e}");
        let e = parse_bytes("k.yaml", b"a: 1\nb: caf\xc3\xa9 \xff\n", &Limits::CONFIG).unwrap_err();
        assert_eq!((e.kind, e.line, e.column), (YamlErrorKind::NotUtf8, 2, 9));
        assert!(e.to_string().starts_with("k.yaml:2:9: not UTF-8"), "{e}");
        let e = parse_bytes("k.yaml", b"\xff\xfea\x00:\x00", &Limits::CONFIG).unwrap_err();
        assert!(e.message.contains("UTF-16"), "{e}");
        // Kubernetes reads a buffer starting with `{` as JSON: YAML's extras are errors there.
        for bad in [&b"{\"enabled\": yes}"[..], b"{\"a\": 1} # comment", b"  {a: 1}"] {
            let e = parse_kubernetes("c.json", bad, &Limits::CONFIG).unwrap_err();
            assert!(e.kind == YamlErrorKind::Syntax && e.message.contains("reads it as JSON"), "{e}");
            assert!(e.line == 1 && parse("c.json", std::str::from_utf8(bad).unwrap(), &Limits::CONFIG).is_ok());
        }
        assert!(parse_kubernetes("c.yaml", b"enabled: yes # YAML\n", &Limits::CONFIG).is_ok());
    }

    #[test]
    fn every_limit_refuses_before_building() {
        let small = Limits { max_bytes: 100, ..Limits::CONFIG };
        let e = parse("big.yaml", &"a".repeat(101), &small).unwrap_err();
        assert_eq!(
            (e.kind, e.line, e.to_string().starts_with("big.yaml: 101 bytes")),
            (YamlErrorKind::TooLarge, 0, true)
        );
        assert_eq!(parse_bytes("big.yaml", &[b'a'; 101], &small).unwrap_err().kind, YamlErrorKind::TooLarge);

        // 9 levels of 10 aliases: 10^9 nodes if expanded. Refused on line 5 (`e`), where the copies would
        // first pass 10,000 nodes: nothing past that is built.
        let mut laughs = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 0..9u8 {
            let (name, prev) = ((b'b' + i) as char, (b'a' + i) as char);
            laughs.push_str(&format!("{name}: &{name} [{}]\n", vec![format!("*{prev}"); 10].join(", ")));
        }
        let e = err(&laughs);
        assert_eq!((e.kind, e.line), (YamlErrorKind::TooManyNodes, 4), "{e}");
        assert!(e.message.contains("billion laughs"), "{e}");

        let many = format!("a: &a 1\nb: [{}]\n", vec!["*a"; 101].join(", "));
        assert_eq!(err(&many).kind, YamlErrorKind::TooManyAliases);
        let wide = format!("[{}]", vec!["1"; 100_000].join(","));
        let e = parse("w.yaml", &wide, &Limits { max_bytes: 1 << 22, ..Limits::CONFIG }).unwrap_err();
        assert_eq!(e.kind, YamlErrorKind::TooManyNodes);

        // Depth: counted on the way in, and for an alias at the depth it would be copied to.
        let e = err(&format!("{}1{}", "[".repeat(65), "]".repeat(65)));
        assert_eq!((e.kind, e.line, e.column), (YamlErrorKind::TooDeep, 1, 65));
        assert!(parse("ok", &format!("{}1{}", "[".repeat(64), "]".repeat(64)), &Limits::CONFIG).is_ok());
        let block: String = (0..70).map(|i| format!("{}k{i}:\n", "  ".repeat(i))).collect();
        assert_eq!(err(&block).kind, YamlErrorKind::TooDeep);
        let tall = format!("a: &a {}1{}\nb: {}*a{}\n", "[".repeat(40), "]".repeat(40), "[".repeat(30), "]".repeat(30));
        let e = err(&tall);
        assert_eq!((e.kind, e.line), (YamlErrorKind::TooDeep, 2), "{e}");
    }

    #[test]
    fn ten_thousand_brackets_on_a_small_stack() {
        // No recursion anywhere: a 64 KiB stack (a thirtieth of a tokio worker's) is plenty.
        let t = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(|| {
                let e = parse("deep.yaml", &"[".repeat(10_000), &Limits::CONFIG).unwrap_err();
                let f = parse("deep.yaml", &"{a: ".repeat(10_000), &Limits::CONFIG).unwrap_err();
                (e.kind, f.kind)
            })
            .unwrap();
        assert_eq!(t.join().unwrap(), (YamlErrorKind::TooDeep, YamlErrorKind::TooDeep));
    }

    #[test]
    fn paths_and_lookups() {
        let d = doc("evictionHard:\n  memory.available: 100Mi\nlist: [a, {b: c}]\n");
        assert_eq!(d.root.get_path(&["evictionHard", "memory.available"]).and_then(Node::text), Some("100Mi"));
        assert!(d.root.get("evictionHard.memory.available").is_none());
        assert_eq!(d.root.get("list.1.b").and_then(Node::text), Some("c"));
        assert!(d.root.get("list.2").is_none() && d.root.get("list.x").is_none() && d.root.get("list.0.y").is_none());
        assert_eq!(d.root.get("list.1").map(|n| (n.line, n.column)), Some((3, 11)));
        assert!(d.root.get("Evictionhard").is_none(), "keys match case-sensitively, as sigs.k8s.io/json does");
    }
}
