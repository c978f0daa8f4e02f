//! OpenSSH client configuration (`ssh_config`, `~/.ssh/config`): what fleetaudit honours of it, read the way
//! `ssh` reads it, so a host the user reaches with `ssh ADDRESS` is reached the same way by a scan.
//!
//! Owns: parsing (keywords case-insensitive, `Keyword value` or `Keyword=value`, double quotes, `#` comments),
//! `Host` blocks (several patterns, `*`/`?` wildcards, `!` negation), `Match all`, `Match host`/`originalhost`
//! (comma lists, `!`), `Include` (globs; relative paths under `~/.ssh`, as for a user's config; conditional when
//! inside a block; at most 16 deep), first-obtained-value-wins per keyword with `IdentityFile` accumulating, and
//! the `%` tokens and `~` of file names ([`expand`]).
//! Keywords used: `HostName`, `User`, `Port`, `IdentityFile`, `CertificateFile`, `ProxyJump`, `UserKnownHostsFile`;
//! any other is
//! ignored, as fleetaudit has no use for it. `Match` criteria that need a command or the network (`exec`,
//! `canonical`, `localnetwork`, ...) are refused with the file and line rather than guessed.
//! Must not touch: the network, key files. Never panics, whatever the file holds: it is user input.

use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

/// OpenSSH's own limit on nested `Include`s (`READCONF_MAX_DEPTH`); also stops include loops.
const MAX_DEPTH: usize = 16;
/// A config file larger than this is not a config file.
const MAX_FILE: u64 = 4 << 20;

/// A problem in an ssh_config file, at a line (0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct SshConfigError {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for SshConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file.display(), self.message)
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        }
    }
}

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct At {
    pub file: PathBuf,
    pub line: usize,
}

impl At {
    /// An error at this place.
    pub fn error(&self, message: impl Into<String>) -> SshConfigError {
        SshConfigError { file: self.file.clone(), line: self.line, message: message.into() }
    }
}

/// A value and where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Value<T> {
    pub value: T,
    pub at: At,
}

/// What the config says for one host: the first value obtained of each keyword (every `IdentityFile`).
/// Values are as written: tokens and `~` are expanded by [`expand`] once the user and port are known.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    pub hostname: Option<Value<String>>,
    pub user: Option<Value<String>>,
    pub port: Option<Value<u16>>,
    pub identity_files: Vec<Value<String>>,
    /// Every `CertificateFile`, as `IdentityFile`s accumulate.
    pub certificate_files: Vec<Value<String>>,
    pub proxy_jump: Option<Value<String>>,
    pub user_known_hosts: Option<Value<Vec<String>>>,
}

/// A parsed config file with its includes.
#[derive(Debug, Clone, Default)]
pub struct SshConfig {
    items: Vec<Item>,
}

#[derive(Debug, Clone)]
enum Item {
    /// `Host` patterns: the block applies when one matches and no negated one does.
    Host(Vec<String>),
    /// `Match` criteria, all of which must hold.
    Match(Vec<Criterion>),
    Set(At, Setting),
    /// The files an `Include` line found, each parsed.
    Include(Vec<Vec<Item>>),
}

#[derive(Debug, Clone)]
enum Criterion {
    All,
    Host { negate: bool, patterns: String },
    OriginalHost { negate: bool, patterns: String },
}

#[derive(Debug, Clone)]
enum Setting {
    HostName(String),
    User(String),
    Port(u16),
    IdentityFile(String),
    CertificateFile(String),
    ProxyJump(String),
    UserKnownHostsFile(Vec<String>),
}

impl SshConfig {
    /// Reads `path` and the files it includes. `home` anchors `~` and relative includes (`~/.ssh/`).
    pub fn load(path: &Path, home: Option<&Path>) -> Result<SshConfig, SshConfigError> {
        let text = read(path, &At { file: path.to_owned(), line: 0 })?;
        SshConfig::parse(path, &text, home)
    }

    /// Parses `text` as the contents of `path` (which names it in errors); included files are read from disk.
    pub fn parse(path: &Path, text: &str, home: Option<&Path>) -> Result<SshConfig, SshConfigError> {
        Ok(SshConfig { items: parse_file(path, text, home, 0)? })
    }

    /// What applies to `host` (the name written after `ssh`), evaluated as `ssh` does: top to bottom, the first
    /// value of each keyword wins.
    pub fn resolve(&self, host: &str) -> Resolved {
        let mut out = Resolved::default();
        let mut active = true;
        eval(&self.items, &host.to_ascii_lowercase(), &mut active, false, &mut out);
        out
    }
}

fn read(path: &Path, at: &At) -> Result<String, SshConfigError> {
    use std::io::Read as _;
    // At line 0 the error already names the file.
    let fail = |e: std::io::Error| match at.line {
        0 => at.error(format!("cannot read this ssh_config file: {e}; check the path")),
        _ => at.error(format!("Include: cannot read {}: {e}", path.display())),
    };
    let file = std::fs::File::open(path).map_err(fail)?;
    let mut text = String::new();
    file.take(MAX_FILE + 1).read_to_string(&mut text).map_err(fail)?;
    if text.len() as u64 > MAX_FILE {
        return Err(at.error(format!(
            "{} is larger than {} MiB: not an ssh_config file",
            path.display(),
            MAX_FILE >> 20
        )));
    }
    Ok(text)
}

fn parse_file(path: &Path, text: &str, home: Option<&Path>, depth: usize) -> Result<Vec<Item>, SshConfigError> {
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let at = At { file: path.to_owned(), line: i + 1 };
        let Some((keyword, args)) = split_line(line).map_err(|m| at.error(m))? else { continue };
        let one = |what: &str| -> Result<String, SshConfigError> {
            match args.as_slice() {
                [v] => Ok(v.clone()),
                [] => Err(at.error(format!("{keyword}: missing {what}"))),
                _ => Err(at
                    .error(format!("{keyword}: one {what} expected, found {}: quote a value with spaces", args.len()))),
            }
        };
        let item = match keyword.to_ascii_lowercase().as_str() {
            "host" => {
                if args.is_empty() {
                    return Err(at.error("Host: missing pattern (write `Host *` for every host)"));
                }
                Item::Host(args.iter().map(|a| a.to_ascii_lowercase()).collect())
            }
            "match" => Item::Match(criteria(&args).map_err(|m| at.error(m))?),
            "include" => {
                if args.is_empty() {
                    return Err(at.error("Include: missing file name"));
                }
                if depth + 1 >= MAX_DEPTH {
                    return Err(
                        at.error(format!("Include nested more than {MAX_DEPTH} deep: is a file including itself?"))
                    );
                }
                let mut files = Vec::new();
                for pattern in &args {
                    for file in include_paths(pattern, home).map_err(|m| at.error(m))? {
                        let text = read(&file, &at)?;
                        files.push(parse_file(&file, &text, home, depth + 1)?);
                    }
                }
                Item::Include(files)
            }
            "hostname" => Item::Set(at.clone(), Setting::HostName(one("host name")?)),
            "user" => Item::Set(at.clone(), Setting::User(one("user name")?)),
            "port" => {
                let p = one("port")?;
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => Item::Set(at.clone(), Setting::Port(n)),
                    _ => return Err(at.error(format!("Port {p:?} is not a port number: use 1 to 65535"))),
                }
            }
            "identityfile" => Item::Set(at.clone(), Setting::IdentityFile(one("file name")?)),
            "certificatefile" => Item::Set(at.clone(), Setting::CertificateFile(one("file name")?)),
            "proxyjump" => Item::Set(at.clone(), Setting::ProxyJump(one("jump host")?)),
            "userknownhostsfile" => {
                if args.is_empty() {
                    return Err(at.error(format!("{keyword}: missing file name")));
                }
                Item::Set(at.clone(), Setting::UserKnownHostsFile(args))
            }
            // Everything else (Ciphers, ForwardAgent, ...) has no bearing on a scan.
            _ => continue,
        };
        items.push(item);
    }
    Ok(items)
}

/// The keyword and arguments of a line, `None` for blank lines and comments. Arguments are split on
/// whitespace; double-quoted ones may hold spaces; a word starting with `#` starts a comment.
fn split_line(line: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    // The keyword ends at whitespace or '=' ("Port=22", "Port = 22", "Port 22").
    let end = line.find(|c: char| c.is_whitespace() || c == '=').unwrap_or(line.len());
    let (keyword, mut rest) = line.split_at(end);
    rest = rest.trim_start();
    if let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start();
    }
    if keyword.is_empty() {
        return Err("a line must start with a keyword".into());
    }
    let mut args = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let Some(&first) = chars.peek() else { break };
        if first == '#' {
            break;
        }
        let mut word = String::new();
        if first == '"' {
            chars.next();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' if chars.peek().is_some_and(|&n| n == '"' || n == '\\') => word.extend(chars.next()),
                    c => word.push(c),
                }
            }
            if !closed {
                return Err(format!("{keyword}: unterminated quote"));
            }
            if chars.peek().is_some_and(|c| !c.is_whitespace()) {
                return Err(format!("{keyword}: put a space after the closing quote"));
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                word.push(c);
                chars.next();
            }
        }
        args.push(word);
    }
    Ok(Some((keyword.to_owned(), args)))
}

fn criteria(args: &[String]) -> Result<Vec<Criterion>, String> {
    let mut out = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let (negate, name) = match word.strip_prefix('!') {
            Some(n) => (true, n),
            None => (false, word.as_str()),
        };
        let mut list = || {
            words
                .next()
                .map(|w| w.to_ascii_lowercase())
                .ok_or_else(|| format!("Match {name}: missing the list of patterns"))
        };
        match name.to_ascii_lowercase().as_str() {
            "all" if !negate && args.len() == 1 => out.push(Criterion::All),
            "all" => return Err("Match all: `all` must stand alone".into()),
            "host" => out.push(Criterion::Host { negate, patterns: list()? }),
            "originalhost" => out.push(Criterion::OriginalHost { negate, patterns: list()? }),
            other => {
                return Err(format!(
                    "Match {other}: fleetaudit evaluates only `Match all`, `Match host` and `Match originalhost`, \
                     not criteria that need a command, the network or the login; move the hosts fleetaudit scans \
                     into `Host` blocks, or give fleetaudit its own file (--ssh-config)"
                ));
            }
        }
    }
    if out.is_empty() {
        return Err("Match: missing criteria (e.g. `Match host *.example.internal`)".into());
    }
    Ok(out)
}

/// The files an `Include` argument names: `~` expanded, relative to `~/.ssh/`, wildcards in any component
/// expanded in sorted order (as glob(3) does). A pattern matching nothing includes nothing, as in `ssh`.
fn include_paths(pattern: &str, home: Option<&Path>) -> Result<Vec<PathBuf>, String> {
    let home_of = || home.ok_or_else(|| format!("Include {pattern}: $HOME is not set; write an absolute path"));
    let path = if pattern == "~" || pattern.starts_with("~/") {
        home_of()?.join(pattern.trim_start_matches('~').trim_start_matches('/'))
    } else if pattern.starts_with('~') {
        return Err(format!("Include {pattern}: only \"~/\" is expanded; write the full path"));
    } else if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        home_of()?.join(".ssh").join(pattern)
    };
    let mut found = vec![PathBuf::from("/")];
    for component in path.components().skip(1) {
        let part = component.as_os_str().to_string_lossy();
        let wild = part.contains(['*', '?']);
        let mut next = Vec::new();
        for dir in found {
            if !wild {
                next.push(dir.join(component));
                continue;
            }
            let Ok(entries) = std::fs::read_dir(&dir) else { continue };
            let mut names: Vec<String> = entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.') && wildcard(&part, n))
                .collect();
            names.sort();
            next.extend(names.into_iter().map(|n| dir.join(n)));
        }
        found = next;
    }
    Ok(found.into_iter().filter(|p| p.is_file()).collect())
}

fn eval(items: &[Item], host: &str, active: &mut bool, never: bool, out: &mut Resolved) {
    for item in items {
        match item {
            Item::Host(patterns) => *active = !never && host_matches(patterns, host),
            Item::Match(criteria) => {
                // `Match host` sees the name as resolved so far: HostName once a line has set it.
                let current = match &out.hostname {
                    Some(h) => h.value.replace("%h", host).to_ascii_lowercase(),
                    None => host.to_owned(),
                };
                *active = !never
                    && criteria.iter().all(|c| match c {
                        Criterion::All => true,
                        Criterion::Host { negate, patterns } => list_matches(patterns, &current) != *negate,
                        Criterion::OriginalHost { negate, patterns } => list_matches(patterns, host) != *negate,
                    });
            }
            Item::Include(files) => {
                let was = *active;
                for f in files {
                    eval(f, host, active, never || !was, out);
                }
                *active = was;
            }
            Item::Set(at, setting) if *active => {
                let v = |value| Some(Value { value, at: at.clone() });
                match setting {
                    Setting::HostName(h) if out.hostname.is_none() => out.hostname = v(h.clone()),
                    Setting::User(u) if out.user.is_none() => out.user = v(u.clone()),
                    Setting::Port(p) if out.port.is_none() => out.port = Some(Value { value: *p, at: at.clone() }),
                    Setting::IdentityFile(f) => out.identity_files.push(Value { value: f.clone(), at: at.clone() }),
                    Setting::CertificateFile(f) => {
                        out.certificate_files.push(Value { value: f.clone(), at: at.clone() })
                    }
                    Setting::ProxyJump(j) if out.proxy_jump.is_none() => out.proxy_jump = v(j.clone()),
                    Setting::UserKnownHostsFile(f) if out.user_known_hosts.is_none() => {
                        out.user_known_hosts = Some(Value { value: f.clone(), at: at.clone() })
                    }
                    _ => {}
                }
            }
            Item::Set(..) => {}
        }
    }
}

/// A `Host` line: some pattern matches and no negated one does.
fn host_matches(patterns: &[String], host: &str) -> bool {
    let mut hit = false;
    for p in patterns {
        match p.strip_prefix('!') {
            Some(neg) if wildcard(neg, host) => return false,
            Some(_) => {}
            None => hit |= wildcard(p, host),
        }
    }
    hit
}

/// A comma-separated list as `Match host` takes it, with the same rule.
fn list_matches(list: &str, host: &str) -> bool {
    let patterns: Vec<String> = list.split(',').filter(|p| !p.is_empty()).map(str::to_owned).collect();
    host_matches(&patterns, host)
}

/// `*` (any run) and `?` (one character), iteratively: no recursion to blow the stack on hostile patterns.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// What `%` tokens stand for in a file name.
pub struct Tokens<'a> {
    /// `%h`: the host name after `HostName`.
    pub host: &'a str,
    /// `%n`: the name as written (the inventory's address).
    pub original: &'a str,
    /// `%p`
    pub port: u16,
    /// `%r`: the remote user.
    pub user: &'a str,
    /// `%u`: the local user.
    pub local_user: Option<&'a str>,
    /// `%d` and `~`.
    pub home: Option<&'a Path>,
}

/// Expands a file name as `ssh` does for `IdentityFile` and `UserKnownHostsFile`: a leading `~/`, then `%%`,
/// `%h`, `%n`, `%p`, `%r`, `%u`, `%d`. Other tokens and `${VAR}` are refused rather than left in a path.
pub fn expand(written: &str, t: &Tokens<'_>) -> Result<String, String> {
    if written.contains("${") {
        return Err(format!("{written:?}: ${{VAR}} environment references are not supported; write the path"));
    }
    let home = || {
        t.home
            .map(|h| h.display().to_string())
            .ok_or_else(|| format!("{written:?}: $HOME is not set; write the full path"))
    };
    let mut out = String::new();
    let rest = if written == "~" || written.starts_with("~/") {
        out.push_str(&home()?);
        &written[1..]
    } else if written.starts_with('~') {
        return Err(format!("{written:?}: only \"~/\" (your home directory) is expanded; write the full path"));
    } else {
        written
    };
    let token = |c: char| -> Result<Option<String>, String> {
        Ok(Some(match c {
            'h' => t.host.to_owned(),
            'n' => t.original.to_owned(),
            'p' => t.port.to_string(),
            'r' => t.user.to_owned(),
            'u' => t.local_user.ok_or_else(|| format!("{written:?}: %u: $USER is not set"))?.to_owned(),
            'd' => home()?,
            _ => return Ok(None),
        }))
    };
    out.push_str(&expand_tokens(
        rest,
        token,
        &format!("{written:?}"),
        "fleetaudit expands %%, %h, %n, %p, %r, %u, %d",
    )?);
    Ok(out)
}

/// `HostName` may hold `%h` (the name as written) and `%%`.
pub fn expand_hostname(written: &str, original: &str) -> Result<String, String> {
    let token = |c: char| Ok((c == 'h').then(|| original.to_owned()));
    expand_tokens(written, token, &format!("HostName {written:?}"), "only %h and %%")
}

/// Replaces `%%` with `%` and `%c` with `value(c)`; a token `value` does not know (`Ok(None)`) or a lone `%` is
/// an error naming `what` and the `supported` tokens.
fn expand_tokens(
    text: &str,
    value: impl Fn(char) -> Result<Option<String>, String>,
    what: &str,
    supported: &str,
) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(c) => match value(c)? {
                Some(v) => out.push_str(&v),
                None => return Err(format!("{what}: token %{c} is not supported ({supported})")),
            },
            None => return Err(format!("{what}: a lone '%' at the end: write %% for a percent sign")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SshConfig, SshConfigError> {
        SshConfig::parse(Path::new("cfg"), text, Some(Path::new("/nonexistent-home")))
    }

    fn resolve(text: &str, host: &str) -> Resolved {
        parse(text).unwrap().resolve(host)
    }

    fn s(v: &Option<Value<String>>) -> Option<&str> {
        v.as_ref().map(|v| v.value.as_str())
    }

    #[test]
    fn first_value_wins_and_identity_files_accumulate() {
        let text = "# comment\nHost web-* !web-secret\n  HostName %h.example.internal\n  User=deploy\n  Port 2222\n  \
                    IdentityFile ~/.ssh/web\n\nHost *\n  User nobody\n  Port = 22\n  IdentityFile \"~/.ssh/my key\"\n";
        let r = resolve(text, "web-1");
        assert_eq!(s(&r.hostname), Some("%h.example.internal"));
        assert_eq!(s(&r.user), Some("deploy"));
        assert_eq!(r.port.as_ref().map(|p| (p.value, p.at.line)), Some((2222, 5)));
        let files: Vec<&str> = r.identity_files.iter().map(|f| f.value.as_str()).collect();
        assert_eq!(files, ["~/.ssh/web", "~/.ssh/my key"]);
        // Negation: the secret host only gets the `Host *` block.
        let r = resolve(text, "web-secret");
        assert_eq!((s(&r.hostname), s(&r.user), r.port.map(|p| p.value)), (None, Some("nobody"), Some(22)));
        // Case-insensitive keywords and names.
        let r = resolve("HOST Node-A\nhostNAME 192.0.2.1\n", "node-a");
        assert_eq!(s(&r.hostname), Some("192.0.2.1"));
        let r = resolve("Host Node-A\nHostName 192.0.2.1\n", "NODE-A");
        assert_eq!(s(&r.hostname), Some("192.0.2.1"));
    }

    #[test]
    fn several_patterns_and_wildcards() {
        let text = "Host a b?c *.lab\n  User x\n";
        for (host, hit) in [("a", true), ("b1c", true), ("bc", false), ("n.lab", true), ("lab", false), ("ab", false)] {
            assert_eq!(resolve(text, host).user.is_some(), hit, "{host}");
        }
        // A host matching only negated patterns is not matched.
        assert!(resolve("Host !a\n  User x\n", "b").user.is_none());
        assert!(wildcard("*", ""));
        assert!(wildcard("a*b*c", "aXXbYYc"));
        assert!(!wildcard("a*b*c", "aXXbYY"));
        assert!(wildcard("**?", "x"));
    }

    #[test]
    fn match_blocks() {
        let text = "Host alias\n  HostName real.example.internal\nMatch host *.example.internal\n  User m\n\
                    Match originalhost alias,!other\n  Port 2200\nMatch all\n  IdentityFile k\n";
        let r = resolve(text, "alias");
        assert_eq!((s(&r.user), r.port.map(|p| p.value), r.identity_files.len()), (Some("m"), Some(2200), 1));
        let r = resolve(text, "other");
        assert_eq!((s(&r.user), r.port.map(|p| p.value)), (None, None));
        assert!(resolve("Match !host a\n User u\n", "b").user.is_some());
        assert!(resolve("Match !host a\n User u\n", "a").user.is_none());
    }

    #[test]
    fn proxy_jump_and_known_hosts() {
        let r = resolve("Host n\n ProxyJump admin@bastion:2222\n UserKnownHostsFile ~/kh1 /etc/kh2\n", "n");
        assert_eq!(s(&r.proxy_jump), Some("admin@bastion:2222"));
        assert_eq!(r.user_known_hosts.map(|v| v.value), Some(vec!["~/kh1".to_owned(), "/etc/kh2".to_owned()]));
    }

    #[test]
    fn includes_are_conditional_and_relative_to_dot_ssh() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        std::fs::create_dir_all(home.join(".ssh/config.d")).unwrap();
        std::fs::write(home.join(".ssh/config.d/10-lab"), "User from-include\nHost lab-*\n  Port 2022\n").unwrap();
        std::fs::write(home.join(".ssh/config.d/20-other"), "Host *\n  HostName other\n").unwrap();
        std::fs::write(home.join(".ssh/config.d/.hidden"), "Host *\n  IdentityFile hidden\n").unwrap();
        let main = home.join(".ssh/config");
        std::fs::write(&main, "Host lab-* prod-*\n  Include config.d/*\nHost *\n  User fallback\n").unwrap();
        let cfg = SshConfig::load(&main, Some(home)).unwrap();
        let r = cfg.resolve("lab-1");
        assert_eq!((s(&r.user), r.port.as_ref().map(|p| p.value)), (Some("from-include"), Some(2022)));
        assert_eq!(r.user.as_ref().unwrap().at.file, home.join(".ssh/config.d/10-lab"));
        assert_eq!(s(&r.hostname), Some("other"));
        assert!(r.identity_files.is_empty(), "dot files are not matched by *");
        // Not matching the outer block: nothing in the included files applies, not even their own Host blocks.
        let r = cfg.resolve("web-1");
        assert_eq!((s(&r.user), s(&r.hostname)), (Some("fallback"), None));
        // A missing include is no error, as for ssh.
        assert!(parse("Include /nonexistent/fleetaudit/*.conf\n").is_ok());
        // A loop is.
        let looping = home.join("loop");
        std::fs::write(&looping, format!("Include {}\n", looping.display())).unwrap();
        let e = SshConfig::load(&looping, Some(home)).unwrap_err();
        assert!(e.to_string().contains("nested more than 16"), "{e}");
    }

    #[test]
    fn errors_name_file_and_line() {
        for (text, line, part) in [
            ("Host\n", 1, "missing pattern"),
            ("\nPort 0\n", 2, "not a port"),
            ("Port ssh\n", 1, "not a port"),
            ("Host a\n  HostName a b\n", 2, "one host name expected"),
            ("User \"unterminated\n", 1, "unterminated quote"),
            ("Match exec \"true\"\n", 1, "Match exec"),
            ("Match host\n", 1, "missing the list"),
            ("Match all host a\n", 1, "must stand alone"),
            ("Match\n", 1, "missing criteria"),
            ("Include\n", 1, "missing file name"),
            ("IdentityFile\n", 1, "missing file name"),
            ("=x\n", 1, "start with a keyword"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!((e.file.as_path(), e.line), (Path::new("cfg"), line), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("cfg:{line}: ")) && e.message.contains(part), "{text:?}: {e}");
        }
        // Unknown keywords and comments after values are ignored.
        let r = resolve("ForwardAgent yes\nFrobnicate\nHost a # the a host\n User u # me\n", "a");
        assert_eq!(s(&r.user), Some("u"));
    }

    #[test]
    fn tokens() {
        let home = Path::new("/home/me");
        let t = Tokens {
            host: "10.0.0.1",
            original: "n1",
            port: 2222,
            user: "audit",
            local_user: Some("me"),
            home: Some(home),
        };
        assert_eq!(expand("~/.ssh/%r@%h:%p-%n-%u-%%", &t).unwrap(), "/home/me/.ssh/audit@10.0.0.1:2222-n1-me-%");
        assert_eq!(expand("%d/k", &t).unwrap(), "/home/me/k");
        assert_eq!(expand("/abs/k", &t).unwrap(), "/abs/k");
        for (bad, why) in [("%C", "%C"), ("k%", "lone"), ("${HOME}/k", "${VAR}"), ("~bob/k", "only")] {
            assert!(expand(bad, &t).unwrap_err().contains(why), "{bad}");
        }
        assert_eq!(expand_hostname("%h.example.internal", "n1").unwrap(), "n1.example.internal");
        assert!(expand_hostname("%p", "n1").is_err());
    }

    // `Include` is left to the tests above: random patterns such as `/*/*` would read the machine's files.
    proptest::proptest! {
        #[test]
        fn never_panics(text in "(?s)[^I]{0,400}", host in "[a-z0-9.*?!-]{0,20}") {
            if let Ok(cfg) = parse(&text) {
                let r = cfg.resolve(&host);
                for f in &r.identity_files {
                    let t = Tokens { host: &host, original: &host, port: 22, user: "u", local_user: None, home: None };
                    let _ = expand(&f.value, &t);
                }
            }
        }

        #[test]
        fn never_panics_on_config_shaped_text(
            lines in proptest::collection::vec(
                ("(Host|Match|HostName|User|Port|IdentityFile|ProxyJump|UserKnownHostsFile|X)",
                 "[ =\t]{0,2}", "[\"#%!*?a-z0-9 ,~/.=\\\\-]{0,30}"), 0..20),
            host in "[a-z0-9.-]{0,12}",
        ) {
            let text: String = lines.iter().map(|(k, s, v)| format!("{k}{s}{v}\n")).collect();
            if let Ok(cfg) = parse(&text) {
                let _ = cfg.resolve(&host);
            }
        }
    }
}
