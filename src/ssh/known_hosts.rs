//! OpenSSH `known_hosts` files, read the way `ssh` reads them.
//!
//! Our own small parser rather than russh's helpers, which (russh 0.65) ignore `@revoked`, wildcards and tabs,
//! fail on double spaces, miscount lines after comments and call a second key of the same type "changed".
//! Supported: plain and hashed (`|1|salt|hash`) host fields, `[host]:port` for non-22 ports, comma lists,
//! `*`/`?` wildcards and `!` negation, `@revoked` (that key is refused, whether presented as a plain key, inside
//! a host certificate, or as the CA that signed one), `@cert-authority` (a CA trusted to sign host certificates
//! for the names its line matches: [`KnownHosts::authorities`]; `ssh::certs` judges the certificates). As in
//! OpenSSH, a CA line never trusts the CA's key as a host key.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use russh::keys::{HashAlg, PublicKey};
use sha1::Sha1;

/// One usable line of a known_hosts file.
#[derive(Debug, Clone)]
struct Entry {
    file: PathBuf,
    line: usize,
    hosts: HostField,
    marker: Marker,
    key: PublicKey,
}

/// The `@` marker of a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    Revoked,
    CertAuthority,
}

#[derive(Debug, Clone)]
enum HostField {
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
    Patterns(Vec<String>),
}

/// Where a recorded key lives, for messages: `~/.ssh/known_hosts:12`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    pub file: PathBuf,
    pub line: usize,
    pub fingerprint: String,
}

impl fmt::Display for Recorded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}:{}", self.fingerprint, self.file.display(), self.line)
    }
}

/// What the files say about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Known,
    /// No line names this host.
    Unknown,
    /// Lines name this host, with other keys: a possible man-in-the-middle.
    Changed(Vec<Recorded>),
    /// The key is marked `@revoked`.
    Revoked(Recorded),
}

/// The known_hosts files in force, parsed once per scan.
#[derive(Debug, Clone, Default)]
pub struct KnownHosts {
    entries: Vec<Entry>,
    /// Entries whose host field is only plain names, under each name as `ssh` looks it up (`host` or
    /// `[host]:port`, lower-case): a scan checks every host, so walking every line per host would cost
    /// hosts × lines (10,000 × 10,000 was 15% of a scan's CPU).
    by_name: HashMap<String, Vec<usize>>,
    /// Hashed, wildcard and negated entries: these are checked one by one.
    scanned: Vec<usize>,
}

impl KnownHosts {
    /// Reads every file; a missing file is an empty one (as for `ssh`), an unreadable one is an error.
    pub fn load(files: &[PathBuf]) -> std::io::Result<KnownHosts> {
        let mut kh = KnownHosts::default();
        for file in files {
            match std::fs::read_to_string(file) {
                Ok(text) => kh.add(file, &text),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", file.display()))),
            }
        }
        Ok(kh)
    }

    /// Adds the lines of one file. Lines that do not parse are skipped, as `ssh` skips them.
    pub fn add(&mut self, file: &Path, text: &str) {
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_ascii_whitespace();
            let mut first = fields.next().unwrap_or_default();
            let mut marker = Marker::None;
            if first.starts_with('@') {
                marker = match first {
                    "@revoked" => Marker::Revoked,
                    "@cert-authority" => Marker::CertAuthority,
                    _ => continue, // unknown markers, as `ssh` skips them
                };
                first = fields.next().unwrap_or_default();
            }
            let (Some(kind), Some(data)) = (fields.next(), fields.next()) else { continue };
            let Ok(key) = PublicKey::from_openssh(&format!("{kind} {data}")) else { continue };
            let hosts = match first.strip_prefix("|1|").and_then(|r| r.split_once('|')) {
                Some((salt, hash)) => match (B64.decode(salt), B64.decode(hash)) {
                    (Ok(salt), Ok(hash)) => HostField::Hashed { salt, hash },
                    _ => continue,
                },
                None => HostField::Patterns(first.split(',').map(str::to_owned).collect()),
            };
            let index = self.entries.len();
            match hosts.plain_names() {
                Some(names) => names.into_iter().for_each(|n| self.by_name.entry(n).or_default().push(index)),
                None => self.scanned.push(index),
            }
            self.entries.push(Entry { file: file.to_owned(), line: i + 1, hosts, marker, key });
        }
    }

    /// The lines that name `host` on `port`, in file order (it decides which line a message names).
    fn matching(&self, host: &str, port: u16) -> impl Iterator<Item = &Entry> {
        let name = host_name(host, port);
        let mut candidates: Vec<usize> = self.scanned.clone();
        candidates.extend(self.by_name.get(&name.to_ascii_lowercase()).into_iter().flatten());
        candidates.sort_unstable();
        // A line naming the host twice (`n1,N1`) is indexed under the name twice, and is still one line.
        candidates.dedup();
        candidates.into_iter().map(|i| &self.entries[i]).filter(move |e| e.hosts.matches(&name))
    }

    /// Judges `key` presented by `host` on `port` as a plain host key.
    pub fn check(&self, host: &str, port: u16, key: &PublicKey) -> Verdict {
        let mut others = Vec::new();
        let mut known = false;
        for e in self.matching(host, port) {
            let same = e.key.key_data() == key.key_data();
            match (same, e.marker) {
                (true, Marker::Revoked) => return Verdict::Revoked(e.recorded()),
                (true, Marker::None) => known = true,
                (false, Marker::None) => others.push(e.recorded()),
                // A CA's key is not a host key, and a CA line does not make a host's other keys "changed".
                (_, Marker::CertAuthority) | (false, Marker::Revoked) => {}
            }
        }
        match (known, others.is_empty()) {
            (true, _) => Verdict::Known,
            (false, true) => Verdict::Unknown,
            (false, false) => Verdict::Changed(others),
        }
    }

    /// The `@revoked` line naming `key` for `host` on `port`, if any.
    pub fn revoked(&self, host: &str, port: u16, key: &PublicKey) -> Option<Recorded> {
        self.matching(host, port)
            .find(|e| e.marker == Marker::Revoked && e.key.key_data() == key.key_data())
            .map(Entry::recorded)
    }

    /// The CAs that `@cert-authority` lines trust to sign host certificates for `host` on `port`, with where each
    /// is written, in file order.
    pub fn authorities(&self, host: &str, port: u16) -> Vec<(PublicKey, Recorded)> {
        self.matching(host, port)
            .filter(|e| e.marker == Marker::CertAuthority)
            .map(|e| (e.key.clone(), e.recorded()))
            .collect()
    }
}

impl Entry {
    fn recorded(&self) -> Recorded {
        Recorded { file: self.file.clone(), line: self.line, fingerprint: fingerprint(&self.key) }
    }
}

impl HostField {
    /// The lookup names of a field made only of plain host names (no hash, wildcard or negation), or `None`.
    fn plain_names(&self) -> Option<Vec<String>> {
        let HostField::Patterns(patterns) = self else { return None };
        let mut names = Vec::with_capacity(patterns.len());
        for p in patterns {
            if p.contains(['*', '?', '!']) {
                return None;
            }
            match p.strip_prefix('[').and_then(|r| r.rsplit_once("]:")) {
                // A port that does not parse never matches: nothing to index.
                Some((h, pt)) => names.extend(pt.parse::<u16>().ok().map(|pt| host_name(h, pt).to_ascii_lowercase())),
                None => names.push(p.to_ascii_lowercase()),
            }
        }
        Some(names)
    }

    fn matches(&self, name: &str) -> bool {
        match self {
            HostField::Hashed { salt, hash } => {
                let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(salt) else { return false };
                mac.update(name.as_bytes());
                mac.verify_slice(hash).is_ok()
            }
            HostField::Patterns(patterns) => {
                let mut matched = false;
                for p in patterns {
                    let (negated, p) = match p.strip_prefix('!') {
                        Some(p) => (true, p),
                        None => (false, p.as_str()),
                    };
                    // As `ssh` does: the pattern against the whole name looked up, `host` or `[host]:port`, so
                    // `*` names every host on every port and `[10.0.0.*]:*` the hosts of 10.0.0.0/24 on any port.
                    let hit = glob(p, name);
                    if hit && negated {
                        return false;
                    }
                    matched |= hit;
                }
                matched
            }
        }
    }
}

/// The name `ssh` looks up: `host` for port 22, `[host]:port` otherwise.
pub fn host_name(host: &str, port: u16) -> String {
    if port == 22 { host.to_owned() } else { format!("[{host}]:{port}") }
}

/// `SHA256:...`, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(HashAlg::Sha256).to_string()
}

/// The known_hosts line that trusts `key` for `host:port`.
pub fn line_for(host: &str, port: u16, key: &PublicKey) -> String {
    let mut k = key.clone();
    k.set_comment("");
    format!("{} {}", host_name(host, port), k.to_openssh().unwrap_or_default().trim_end())
}

/// OpenSSH host patterns: `*` any run, `?` one character, case-insensitive. Iterative, backtracking only to
/// the last `*`: O(pattern × text), where the naive recursion is exponential in the number of stars.
pub(crate) fn glob(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // After the last `*` seen: the pattern position after it, and the text position it has consumed up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi + 1, ti));
                pi += 1;
            }
            Some(b'?') => (pi, ti) = (pi + 1, ti + 1),
            Some(c) if c.eq_ignore_ascii_case(&t[ti]) => (pi, ti) = (pi + 1, ti + 1),
            _ => match star {
                // Let the last star swallow one more character and retry from there.
                Some((sp, st)) => {
                    star = Some((sp, st + 1));
                    (pi, ti) = (sp, st + 1);
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAq8wzK4CKXQpcIOtVXGErOUTLMd5I/D/0odxLLNkAfL";
    const B: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKujk3eXkrUGSv7Awzt8HbNEV6X7/bumToNbaqs1HnBF";

    fn key(s: &str) -> PublicKey {
        PublicKey::from_openssh(s).unwrap()
    }

    fn kh(text: &str) -> KnownHosts {
        let mut k = KnownHosts::default();
        k.add(Path::new("kh"), text);
        k
    }

    #[test]
    fn plain_ports_lists_and_odd_spacing() {
        let k = kh(&format!("# comment\n\n10.0.0.1,node1 {A}\n[10.0.0.2]:2222\t{B} comment here\n"));
        assert_eq!(k.check("10.0.0.1", 22, &key(A)), Verdict::Known);
        assert_eq!(k.check("node1", 22, &key(A)), Verdict::Known);
        assert_eq!(k.check("10.0.0.1", 2222, &key(A)), Verdict::Unknown, "port 22 entries do not cover 2222");
        assert_eq!(k.check("10.0.0.2", 2222, &key(B)), Verdict::Known);
        match k.check("10.0.0.1", 22, &key(B)) {
            Verdict::Changed(r) => {
                assert_eq!(r[0].line, 3, "line numbers count comments and blanks");
                assert!(r[0].fingerprint.starts_with("SHA256:"));
            }
            v => panic!("{v:?}"),
        }
        let double = kh(&format!("10.0.0.9  {}", A.replace(' ', "   ")));
        assert_eq!(double.check("10.0.0.9", 22, &key(A)), Verdict::Known);
    }

    #[test]
    fn two_keys_of_one_type_are_both_trusted() {
        let k = kh(&format!("h {A}\nh {B}\n"));
        assert_eq!(k.check("h", 22, &key(A)), Verdict::Known);
        assert_eq!(k.check("h", 22, &key(B)), Verdict::Known);
    }

    #[test]
    fn hashed_entries() {
        // |1|salt|HMAC-SHA1(salt, "[127.0.0.1]:2200"), as `ssh-keygen -H` writes it.
        let salt = b"0123456789abcdefghij";
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).unwrap();
        mac.update(b"[127.0.0.1]:2200");
        let hash = mac.finalize().into_bytes();
        let line = format!("|1|{}|{} {A}\n", B64.encode(salt), B64.encode(hash));
        let k = kh(&line);
        assert_eq!(k.check("127.0.0.1", 2200, &key(A)), Verdict::Known);
        assert_eq!(k.check("127.0.0.1", 2201, &key(A)), Verdict::Unknown);
        assert!(matches!(k.check("127.0.0.1", 2200, &key(B)), Verdict::Changed(_)));
    }

    #[test]
    fn cert_authority_lines_hashed_wildcard_ports_and_several_cas() {
        let salt = b"abcdefghij0123456789";
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(salt).unwrap();
        mac.update(b"[10.0.0.7]:2222");
        let hashed = format!("|1|{}|{}", B64.encode(salt), B64.encode(mac.finalize().into_bytes()));
        let k =
            kh(&format!("@cert-authority {hashed} {A}\n@cert-authority [10.0.0.*]:* {B}\n@cert-authority other {A}\n"));
        let cas = |h: &str, p: u16| {
            k.authorities(h, p).into_iter().map(|(key, r)| (fingerprint(&key), r.line)).collect::<Vec<_>>()
        };
        assert_eq!(cas("10.0.0.7", 2222), vec![(fingerprint(&key(A)), 1), (fingerprint(&key(B)), 2)]);
        assert_eq!(cas("10.0.0.8", 22), vec![], "[10.0.0.*]:* names [host]:port only, as in ssh");
        assert_eq!(cas("10.0.0.8", 2200), vec![(fingerprint(&key(B)), 2)]);
        // A CA's key is not a host key.
        assert_eq!(k.check("10.0.0.7", 2222, &key(A)), Verdict::Unknown);
        assert_eq!(k.check("other", 22, &key(B)), Verdict::Unknown);
    }

    #[test]
    fn wildcards_negation_and_revoked() {
        let k = kh(&format!("*.prod.internal,!bad.prod.internal {A}\n@revoked * {B}\n@cert-authority * {A}\n"));
        assert_eq!(k.check("cp1.prod.internal", 22, &key(A)), Verdict::Known);
        assert_eq!(k.check("bad.prod.internal", 22, &key(A)), Verdict::Unknown);
        assert!(matches!(k.check("cp1.prod.internal", 22, &key(B)), Verdict::Revoked(_)));
        assert!(glob("10.0.?.*", "10.0.1.23"));
        assert!(!glob("10.0.?.*", "10.0.12.3"));
    }

    /// The definition the iterative [`glob`] must agree with (exponential, fine for short inputs).
    fn glob_reference(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => glob_reference(&p[1..], t) || (!t.is_empty() && glob_reference(p, &t[1..])),
            (Some(b'?'), Some(_)) => glob_reference(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a.eq_ignore_ascii_case(b) => glob_reference(&p[1..], &t[1..]),
            _ => false,
        }
    }

    proptest::proptest! {
        #[test]
        fn glob_agrees_with_its_definition(p in "[ab.*?]{0,9}", t in "[abAB.]{0,12}") {
            proptest::prop_assert_eq!(glob(&p, &t), glob_reference(p.as_bytes(), t.as_bytes()));
        }
    }

    proptest::proptest! {
        #[test]
        fn the_name_index_finds_what_reading_every_line_finds(
            lines in proptest::collection::vec(
                ("(@revoked |)", "((\\[)?(H|h|n1|N1|x)(\\]:(22|2200|x))?,?|!h|h\\*|\\?1|\\*){1,3}", proptest::bool::ANY),
                0..8,
            ),
            host in "(h|H|n1|x|\\[h\\])",
            port in proptest::sample::select(vec![22u16, 2200]),
            with_a in proptest::bool::ANY,
        ) {
            let text: String = lines
                .iter()
                .map(|(marker, hosts, a)| format!("{marker}{} {}\n", hosts.trim_end_matches(','), if *a { A } else { B }))
                .collect();
            let indexed = kh(&text);
            let mut linear = indexed.clone();
            linear.by_name.clear();
            linear.scanned = (0..linear.entries.len()).collect();
            let k = key(if with_a { A } else { B });
            proptest::prop_assert_eq!(indexed.check(&host, port, &k), linear.check(&host, port, &k), "{}", text);
        }
    }

    #[test]
    fn a_line_naming_the_host_twice_is_one_line() {
        // Found by the property below: the index held the line under `n1` twice.
        let kh = kh(&format!("n1,N1 {B}\n"));
        match kh.check("n1", 22, &key(A)) {
            Verdict::Changed(lines) => assert_eq!(lines.len(), 1, "{lines:?}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn many_stars_do_not_backtrack_exponentially() {
        // The recursive matcher explores on the order of C(60, 30) ways to split the text among the stars here
        // (a pattern from a user's known_hosts, a name from the inventory) and never returns; this one is linear
        // in pattern × text.
        let pattern = "*a".repeat(30) + "b";
        assert!(!glob(&pattern, &"a".repeat(60)));
        assert!(glob(&pattern, &("a".repeat(60) + "b")));
    }

    #[test]
    fn garbage_lines_are_skipped_and_missing_files_are_empty() {
        let k = kh("garbage\nhost ssh-ed25519 !!!notbase64\n|1|x host\n");
        assert_eq!(k.check("host", 22, &key(A)), Verdict::Unknown);
        let k = KnownHosts::load(&[PathBuf::from("/nonexistent/known_hosts")]).unwrap();
        assert_eq!(k.check("host", 22, &key(A)), Verdict::Unknown);
    }

    #[test]
    fn the_trust_line_round_trips() {
        let line = line_for("127.0.0.1", 2200, &key(A));
        assert!(line.starts_with("[127.0.0.1]:2200 ssh-ed25519 "));
        assert_eq!(kh(&line).check("127.0.0.1", 2200, &key(A)), Verdict::Known);
    }
}
