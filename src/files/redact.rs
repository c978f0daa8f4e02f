//! Secrets out of what a host sends, before anything keeps it: the one place file contents enter fleetaudit.
//!
//! Owns: [`admit`], which turns the raw bytes of a file read over SFTP (or taken from a snapshot) into the
//! [`Content`] everything downstream sees: in config documents every value under a key that names a secret
//! (`secret:` in an EncryptionConfiguration, k3s's `token:` and `agent-token:`, `password`), and the password
//! of any `scheme://user:password@` URL, replaced by `"<redacted>"`; of a process environment only the
//! variables the rules read, the rest dropped unread; of a PEM file only its certificate blocks (a private key
//! beside a certificate is dropped). It keeps line numbers and the document's shape, so the
//! redacted text still parses and evidence lines still point at the right line.
//! Must not touch: SSH, rules, the database. Kubeconfigs and private keys never reach it: they are only
//! stat'ed.

use sha2::Digest;

use super::Content;

/// What replaces a secret value: a quoted string, valid in YAML and JSON alike.
pub const REDACTED: &str = "\"<redacted>\"";

/// The bytes as fleetaudit keeps them. `keep_env` says which variables of a `/proc/PID/environ` are read by
/// a rule (`ETCD_CLIENT_CERT_AUTH`); every other variable is dropped.
///
/// The hash is of the bytes as the host sent them when nothing was redacted, and of the redacted bytes
/// otherwise: a hash of a file whose other bytes are stored would let anyone holding the database test
/// guesses at a weak secret. So a rotated secret alone does not show as drift.
pub fn admit(path: &str, raw: Vec<u8>, keep_env: &dyn Fn(&str) -> bool) -> Content {
    let redacted = if is_environ(path) {
        environ(&raw, keep_env)
    } else if matches!(path, "/etc/passwd" | "/etc/group") || is_proc(path, "cgroup") {
        None
    } else if raw.trim_ascii_start().starts_with(b"-----BEGIN ") {
        // PEM: only certificate blocks are kept (a key beside them, as in the kubelet's rotated
        // kubelet-server-current.pem, never is).
        super::x509::certificates_only(&raw)
    } else {
        document(&raw)
    };
    match redacted {
        None => Content::plain(raw),
        Some(bytes) => {
            let sha256 = sha2::Sha256::digest(&bytes).into();
            Content { bytes, sha256, redacted: true }
        }
    }
}

fn is_proc(path: &str, file: &str) -> bool {
    path.strip_prefix("/proc/")
        .and_then(|rest| rest.strip_suffix(file))
        .and_then(|pid| pid.strip_suffix('/'))
        .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
}

fn is_environ(path: &str) -> bool {
    is_proc(path, "environ")
}

/// The variables a rule reads, NUL-separated as the kernel gives them; `None` when nothing was dropped.
fn environ(raw: &[u8], keep: &dyn Fn(&str) -> bool) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut dropped = false;
    for entry in raw.split(|b| *b == 0).filter(|e| !e.is_empty()) {
        let kept = std::str::from_utf8(entry).ok().and_then(|e| e.split_once('=')).filter(|(k, _)| keep(k));
        match kept {
            Some((k, v)) => {
                let kept = if is_secret_key(k) { "<redacted>".to_owned() } else { redact_urls(v) };
                dropped |= kept != v;
                out.extend_from_slice(k.as_bytes());
                out.push(b'=');
                out.extend_from_slice(kept.as_bytes());
                out.push(0);
            }
            None => dropped = true,
        }
    }
    dropped.then_some(out)
}

/// Whether a config key names a secret value rather than where one is: `secret`, `token`, `agent-token`,
/// `etcd-s3-secret-key`, `password`, `bootstrapToken`; not `secretbox` (a provider type), `tokenFile` or
/// `token-auth-file` (paths), `tokenTTL`.
pub fn is_secret_key(key: &str) -> bool {
    const SECRET: [&str; 12] = [
        "secret",
        "secrets",
        "token",
        "tokens",
        "password",
        "passwords",
        "passwd",
        "credential",
        "credentials",
        "apikey",
        "passphrase",
        "pass",
    ];
    const NOT_A_VALUE: [&str; 8] = ["file", "path", "dir", "directory", "ttl", "duration", "name", "ref"];
    let words = words(key);
    words.iter().any(|w| SECRET.contains(&w.as_str()))
        && !words.last().is_some_and(|w| NOT_A_VALUE.contains(&w.as_str()))
}

/// `agent-token`, `etcd_s3_secret_key`, `bootstrapToken`, `ETCD_PEER_KEY` as lowercase words.
fn words(key: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        word.push(c.to_ascii_lowercase());
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

/// A YAML or JSON document with secret values replaced, line for line; `None` when nothing was.
fn document(raw: &[u8]) -> Option<Vec<u8>> {
    let text = String::from_utf8_lossy(raw);
    // Anchors whose values an alias under a secret key stands for (`secret: *k` with `k: &k value` elsewhere).
    let mut secret_anchors: Vec<String> = Vec::new();
    for line in text.lines() {
        for pair in pairs(line) {
            if is_secret_key(&pair.key)
                && let Some(alias) = line[pair.value_start..].trim_start().strip_prefix('*')
            {
                let name: String = alias.chars().take_while(|c| !c.is_whitespace() && !",]}".contains(*c)).collect();
                secret_anchors.push(name);
            }
        }
    }
    let mut out = String::with_capacity(text.len());
    // Inside the value of a secret key written over several lines: lines indented more than the key's (or,
    // for a block sequence, `- ` items at its indentation) belong to it, and what each becomes keeps the
    // document valid YAML with the same lines.
    let mut block: Option<(usize, LineEnd)> = None;
    // Inside a quoted secret value that runs over lines: the quote that ends it.
    let mut open_quote: Option<char> = None;
    for line in text.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b.strip_suffix('\r').unwrap_or(b), &line[b.len()..]),
            None => (line, ""),
        };
        let indent = body.len() - body.trim_start_matches([' ', '\t']).len();
        if let Some(q) = open_quote {
            if let Some(end) = closing_quote(body, 0, q) {
                open_quote = None;
                out.push_str(&redact_line(&body[end..], &secret_anchors));
            }
            out.push_str(newline);
            continue;
        }
        if let Some((key_indent, kind)) = block {
            let trimmed = body.trim_start();
            let item = trimmed == "-" || trimmed.starts_with("- ");
            let continues = trimmed.is_empty()
                || trimmed.starts_with('#')
                || indent > key_indent
                || (indent == key_indent && item && kind == LineEnd::Empty);
            if continues {
                if !trimmed.is_empty() && !trimmed.starts_with('#') {
                    match kind {
                        // Inside `|` or `>`: any text is the scalar's.
                        LineEnd::BlockScalar => {
                            out.push_str(&body[..indent]);
                            out.push_str("<redacted>");
                        }
                        // The value is below the key: its items, or its first line as the whole value.
                        LineEnd::Empty if item => {
                            out.push_str(&body[..indent]);
                            out.push_str("- ");
                            out.push_str(REDACTED);
                        }
                        LineEnd::Empty => {
                            out.push_str(&body[..indent]);
                            out.push_str(REDACTED);
                            block = Some((key_indent, LineEnd::Continues));
                        }
                        // The value was already replaced on the key's line: the rest of it goes.
                        _ => {}
                    }
                }
                out.push_str(newline);
                continue;
            }
            block = None;
        }
        let (redacted, state) = redact_pairs(body, &secret_anchors);
        out.push_str(&redacted);
        out.push_str(newline);
        match state {
            LineEnd::Closed => {}
            LineEnd::Quote(q) => open_quote = Some(q),
            other => block = Some((indent_of_last_key(body, indent), other)),
        }
    }
    (out.as_bytes() != raw).then(|| out.into_bytes())
}

/// How a line left a secret value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LineEnd {
    Closed,
    /// Nothing after the colon: the value is on the lines below.
    Empty,
    /// A `|` or `>` block scalar: its lines follow.
    BlockScalar,
    /// Replaced on this line, and may go on over more-indented lines (a plain scalar, an unclosed flow
    /// collection).
    Continues,
    /// Inside a quoted string that the line does not close.
    Quote(char),
}

/// The indentation a block value is measured against: the key's (for `- key:`, the key's column after the
/// dash, which is where its mapping is).
fn indent_of_last_key(line: &str, indent: usize) -> usize {
    match line[indent..].strip_prefix("- ") {
        Some(item) => indent + 2 + (item.len() - item.trim_start().len()),
        None => indent,
    }
}

/// A `key:` on a line and where its value starts.
struct Pair {
    key: String,
    key_start: usize,
    value_start: usize,
    /// Inside `{...}` or `[...]`: a plain value ends at `,`, `}` or `]`.
    in_flow: bool,
}

/// The `key: value` pairs of a line: block keys (`  secret: x`, `- secret: x`) and flow keys
/// (`{"secret": "x", name: y}`), quoted or plain, outside quoted strings and comments.
fn pairs(line: &str) -> Vec<Pair> {
    let b = line.as_bytes();
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    // Where the token that may be a key started, and whether a key may start here.
    let mut token: Option<usize> = None;
    while i < b.len() {
        let c = b[i];
        match c {
            b'#' if i == 0 || b[i - 1] == b' ' || b[i - 1] == b'\t' => break,
            b'"' | b'\'' => {
                let start = i;
                let end = closing_quote(line, i + 1, c as char).unwrap_or(b.len());
                i = end;
                // A quoted key: `"secret": ...` or `'secret' : ...`.
                let mut j = i;
                while j < b.len() && b[j] == b' ' {
                    j += 1;
                }
                if j < b.len() && b[j] == b':' && (token.is_none() || token == Some(start)) {
                    let key = unquote(&line[start..end]);
                    out.push(Pair { key, key_start: start, value_start: j + 1, in_flow: depth > 0 });
                    i = j + 1;
                }
                token = None;
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                token = None;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                token = None;
            }
            b',' => token = None,
            b' ' | b'\t' => {}
            b'-' if token.is_none() && (i + 1 == b.len() || b[i + 1] == b' ') => {}
            b':' if (i + 1 == b.len()
                || matches!(b[i + 1], b' ' | b'\t')
                || (depth > 0 && matches!(b[i + 1], b',' | b'}' | b']'))) =>
            {
                if let Some(start) = token {
                    let key = line[start..i].trim_end().to_owned();
                    out.push(Pair { key, key_start: start, value_start: i + 1, in_flow: depth > 0 });
                }
                token = None;
            }
            _ => {
                if token.is_none() {
                    token = Some(i);
                }
            }
        }
        i += 1;
    }
    out
}

/// The index just past the quote that closes a string whose body starts at `from`.
fn closing_quote(s: &str, from: usize, quote: char) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = from;
    while i < b.len() {
        match (quote, b[i]) {
            ('"', b'\\') => i += 2,
            ('"', b'"') => return Some(i + 1),
            ('\'', b'\'') if i + 1 < b.len() && b[i + 1] == b'\'' => i += 2,
            ('\'', b'\'') => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

fn unquote(s: &str) -> String {
    s.trim_matches(|c| c == '"' || c == '\'').to_owned()
}

/// The line with every secret key's value replaced, and how the line leaves the last one.
fn redact_pairs(line: &str, anchors: &[String]) -> (String, LineEnd) {
    let mut out = String::with_capacity(line.len());
    let mut pos = 0;
    let mut end = LineEnd::Closed;
    let pairs = pairs(line);
    for (n, pair) in pairs.iter().enumerate() {
        if pair.key_start < pos || !is_secret_key(&pair.key) {
            continue;
        }
        let rest = &line[pair.value_start..];
        let lead = rest.len() - rest.trim_start_matches([' ', '\t']).len();
        let start = pair.value_start + lead;
        let value = &line[start..];
        out.push_str(&redact_urls(&line[pos..start]));
        let (len, state) = value_extent(value, pair.in_flow);
        if len == 0 && matches!(state, LineEnd::Empty | LineEnd::BlockScalar) {
            // Nothing on this line (or only a block scalar's header): the value is below it.
            pos = start;
            if n + 1 == pairs.len() {
                end = state;
            }
            continue;
        }
        out.push_str(REDACTED);
        pos = start + len;
        end = state;
    }
    let tail = &line[pos..];
    out.push_str(&redact_line(tail, anchors));
    (out, end)
}

/// URL passwords, and anchored values a secret key aliases.
fn redact_line(s: &str, anchors: &[String]) -> String {
    let mut s = redact_urls(s);
    for a in anchors {
        let marker = format!("&{a}");
        if let Some(i) = s.find(&marker) {
            let after = i + marker.len();
            let (len, _) = value_extent(s[after..].trim_start(), false);
            let lead = s[after..].len() - s[after..].trim_start().len();
            if len > 0 {
                s.replace_range(after + lead..after + lead + len, REDACTED);
            }
        }
    }
    s
}

/// How long the value at the start of `v` is on this line, and whether it continues below.
fn value_extent(v: &str, in_flow: bool) -> (usize, LineEnd) {
    let b = v.as_bytes();
    if b.is_empty() || v.starts_with('#') {
        return (0, LineEnd::Empty);
    }
    // An anchor or a tag before the value.
    let mut skip = 0;
    while skip < b.len() && (b[skip] == b'&' || b[skip] == b'!') {
        while skip < b.len() && b[skip] != b' ' {
            skip += 1;
        }
        while skip < b.len() && b[skip] == b' ' {
            skip += 1;
        }
    }
    let rest = &v[skip..];
    let rb = rest.as_bytes();
    if rb.is_empty() {
        return (0, LineEnd::Empty);
    }
    match rb[0] {
        b'"' | b'\'' => match closing_quote(rest, 1, rb[0] as char) {
            Some(end) => (skip + end, LineEnd::Closed),
            None => (v.len(), LineEnd::Quote(rb[0] as char)),
        },
        // The header stays (`|-`, `>+2`): only the lines below are the value.
        b'|' | b'>' => (0, LineEnd::BlockScalar),
        b'[' | b'{' => {
            let mut depth = 0usize;
            let mut i = 0;
            while i < rb.len() {
                match rb[i] {
                    b'"' | b'\'' => {
                        i = closing_quote(rest, i + 1, rb[i] as char).unwrap_or(rb.len());
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return (skip + i + 1, LineEnd::Closed);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            (v.len(), LineEnd::Continues)
        }
        _ => {
            let mut i = 0;
            while i < rb.len() {
                let c = rb[i];
                if (in_flow && matches!(c, b',' | b'}' | b']')) || (c == b'#' && i > 0 && rb[i - 1] == b' ') {
                    break;
                }
                i += 1;
            }
            let value = rest[..i].trim_end();
            // A plain scalar in a block may go on over more-indented lines.
            (skip + value.len(), if in_flow { LineEnd::Closed } else { LineEnd::Continues })
        }
    }
}

/// `scheme://user:password@host` with the user and password replaced: any URL's userinfo, in any text.
pub fn redact_urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail.find(['/', ' ', ',', '?', '#']).unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("<redacted>");
                rest = &tail[at..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn red(text: &str) -> String {
        String::from_utf8(document(text.as_bytes()).unwrap_or_else(|| text.as_bytes().to_vec())).unwrap()
    }

    #[test]
    fn secret_keys_by_their_words() {
        for k in ["secret", "token", "agent-token", "etcd-s3-secret-key", "bootstrapToken", "password", "ETCD_PASSWORD"]
        {
            assert!(is_secret_key(k), "{k}");
        }
        for k in [
            "secretbox",
            "tokenFile",
            "token-auth-file",
            "tokenTTL",
            "name",
            "keys",
            "aescbc",
            "service-account-key-file",
        ] {
            assert!(!is_secret_key(k), "{k}");
        }
    }

    #[test]
    fn an_encryption_config_loses_its_keys_and_keeps_its_shape() {
        let text = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n  - resources:\n      - secrets\n    providers:\n      - aescbc:\n          keys:\n            - name: key1\n              secret: c2VjcmV0IGlzIHNlY3VyZQ==\n            - {name: key2, secret: 'dGhpcyBpcyBwYXNzd29yZA=='}\n      - identity: {}\n";
        let r = red(text);
        assert!(!r.contains("c2VjcmV0") && !r.contains("dGhpcyBp"), "{r}");
        assert_eq!(r.lines().count(), text.lines().count());
        assert!(r.contains("name: key1") && r.contains("secret: \"<redacted>\""), "{r}");
        let doc = crate::rules::doc::parse("/e.yaml", r.as_bytes()).unwrap();
        assert_eq!(doc.find("@secrets_write_provider").unwrap().to_string(), "aescbc");
    }

    #[test]
    fn every_way_of_writing_a_value_is_covered() {
        let canary = "CANARY1234";
        let cases = [
            format!("token: {canary}\n"),
            format!("token: \"{canary}\"\n"),
            format!("token: '{canary}'\n"),
            format!("agent-token: {canary} # comment\n"),
            format!("{{\"token\": \"{canary}\", \"server\": \"https://h\"}}\n"),
            format!("{{\"token\":\"{canary}\"}}\n"),
            format!("token: |\n  {canary}\n  more\nnext: 1\n"),
            format!("token: >-\n  {canary}\nnext: 1\n"),
            format!("token:\n  {canary}\nnext: 1\n"),
            format!("token: first\n  {canary}\nnext: 1\n"),
            format!("tokens:\n- {canary}\n- other\nnext: 1\n"),
            format!("secret: [{canary}, b]\n"),
            format!("secret: {{a: {canary}}}\n"),
            format!("secret: \"multi\n  {canary}\"\nnext: 1\n"),
            format!("base: &k {canary}\nsecret: *k\n"),
            format!("secret: !!str {canary}\n"),
            format!("datastore-endpoint: postgres://user:{canary}@db:5432/k3s\n"),
            format!("- name: x\n  password: {canary}\n"),
            format!(
                "{{\"resources\": [{{\"providers\": [{{\"aescbc\": {{\"keys\": [{{\"name\": \"k\", \"secret\": \"{canary}\"}}]}}}}]}}]}}\n"
            ),
        ];
        for c in &cases {
            let r = red(c);
            assert!(!r.contains(canary), "canary left in:\n{c}\n->\n{r}");
        }
        // Nothing secret: unchanged, byte for byte.
        let plain = "apiVersion: kubelet.config.k8s.io/v1beta1\nauthentication:\n  anonymous:\n    enabled: false\ntlsCipherSuites: [A, B]\nstaticPodPath: /etc/kubernetes/manifests\n";
        assert!(document(plain.as_bytes()).is_none());
    }

    #[test]
    fn an_environment_keeps_only_what_rules_read() {
        let raw = b"PATH=/usr/bin\0ETCD_CLIENT_CERT_AUTH=true\0ETCD_ROOT_PASSWORD=hunter2\0HOME=/root\0".to_vec();
        let keep = |k: &str| k == "ETCD_CLIENT_CERT_AUTH";
        let c = admit("/proc/12/environ", raw, &keep);
        assert_eq!(c.bytes, b"ETCD_CLIENT_CERT_AUTH=true\0");
        assert!(c.redacted);
        // passwd and cgroup are kept as they are.
        let c = admit("/etc/passwd", b"root:x:0:0::/root:/bin/sh\n".to_vec(), &keep);
        assert!(!c.redacted);
        assert!(is_environ("/proc/1/environ") && !is_environ("/proc/x/environ") && !is_environ("/etc/environ"));
    }
}
