//! A host's own user and group names, from its `/etc/passwd` and `/etc/group`.
//!
//! Owns: reading those two files (as read over SFTP, or from a snapshot) into [`Accounts`], so that file rules
//! can say `root:root` the way `ls -l` on that host would: names are the host's, never this machine's. The
//! files are untrusted: capped in size ([`MAX_ACCOUNTS_FILE`]), a malformed line is skipped with a note
//! naming it, a name with control characters is refused, and where a name or id appears twice the first wins,
//! as glibc's `files` NSS module answers `getpwnam`/`getpwuid` (it returns the first matching line).
//! Must not touch: the network, SSH, rules, the database; it never asks this machine's NSS anything.

use std::collections::HashMap;

use thiserror::Error;

/// The largest `/etc/passwd` or `/etc/group` read: 1 MiB is ~15,000 accounts, far past any Kubernetes node's
/// (a few dozen); what is larger is not read, and owners then show as numbers.
pub const MAX_ACCOUNTS_FILE: usize = super::MAX_FILE as usize;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AccountsError {
    #[error("{file}: {size} bytes, more than the {limit} an account file may have: not read, owners show as numbers")]
    TooLarge { file: String, size: usize, limit: usize },
}

/// One table: names by id and ids by name, the first line winning both ways.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Table {
    names: HashMap<u32, String>,
    ids: HashMap<String, u32>,
}

impl Table {
    /// Records `id`→`name` and `name`→`id` where each is not known yet; returns what was already known.
    fn add(&mut self, id: u32, name: &str) -> (Option<&str>, Option<u32>) {
        let by_name = self.ids.get(name).copied();
        if by_name.is_none() {
            self.ids.insert(name.to_owned(), id);
        }
        let by_id = match self.names.entry(id) {
            std::collections::hash_map::Entry::Occupied(e) => Some(e.into_mut().as_str()),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(name.to_owned());
                None
            }
        };
        (by_id, by_name)
    }
}

/// A host's users and groups.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounts {
    users: Table,
    groups: Table,
    /// Lines skipped or shadowed, in file order: `/etc/passwd:12: why`.
    pub notes: Vec<String>,
}

impl Accounts {
    /// Both files at once; either may be absent (`None`: not read).
    pub fn parse(passwd: Option<&[u8]>, group: Option<&[u8]>) -> Result<Accounts, AccountsError> {
        let mut a = Accounts::default();
        if let Some(p) = passwd {
            a.read_passwd("/etc/passwd", p)?;
        }
        if let Some(g) = group {
            a.read_group("/etc/group", g)?;
        }
        Ok(a)
    }

    /// `name:password:uid:gid:gecos:home:shell` lines (passwd(5)).
    pub fn read_passwd(&mut self, file: &str, bytes: &[u8]) -> Result<(), AccountsError> {
        self.read(file, bytes, 7, true)
    }

    /// `name:password:gid:members` lines (group(5)).
    pub fn read_group(&mut self, file: &str, bytes: &[u8]) -> Result<(), AccountsError> {
        self.read(file, bytes, 4, false)
    }

    fn read(&mut self, file: &str, bytes: &[u8], fields: usize, users: bool) -> Result<(), AccountsError> {
        if bytes.len() > MAX_ACCOUNTS_FILE {
            return Err(AccountsError::TooLarge { file: file.into(), size: bytes.len(), limit: MAX_ACCOUNTS_FILE });
        }
        let what = if users { "user" } else { "group" };
        for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            // Where a note points; formatted only for a note (this runs for every line of every host).
            let at = || format!("{file}:{}", i + 1);
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            // glibc's nss_files skips blank lines and `#` comments.
            if raw.iter().all(u8::is_ascii_whitespace) || raw.first() == Some(&b'#') {
                continue;
            }
            let mut skip = |message: String| self.notes.push(format!("{}: {message}", at()));
            let Ok(line) = std::str::from_utf8(raw) else {
                skip("not UTF-8: skipped".into());
                continue;
            };
            if line.starts_with(['+', '-']) {
                skip("a NIS compat entry (+/-): names from NIS are not resolved here".into());
                continue;
            }
            let parts: Vec<&str> = line.split(':').collect();
            // A line with fewer fields is malformed; glibc also reads lines with extra colons in the last field
            // (a shell path never has one), so more is tolerated.
            if parts.len() < fields {
                skip(format!("{} fields, a {what} line has {fields}: skipped", parts.len()));
                continue;
            }
            let (name, id) = (parts[0], parts[2]);
            if name.is_empty() || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                skip(format!("{name:?} is not a {what} name: skipped"));
                continue;
            }
            let Some(id) = id.parse::<u32>().ok().filter(|_| id.bytes().all(|b| b.is_ascii_digit())) else {
                skip(format!("{what} {name}: id {id:?} is not a number: skipped"));
                continue;
            };
            let table = if users { &mut self.users } else { &mut self.groups };
            let (id_was, name_was) = table.add(id, name);
            let message = match (id_was, name_was) {
                (Some(first), _) if first != name => {
                    Some(format!("{what} id {id} is also named {name}: the first, {first}, is the name used"))
                }
                (_, Some(first)) if first != id => {
                    Some(format!("{what} {name} again with id {id}: the first, {first}, is the id used"))
                }
                _ => None,
            };
            if let Some(message) = message {
                self.notes.push(format!("{}: {message}", at()));
            }
        }
        Ok(())
    }

    /// Records a user where neither the id nor the name is known (a snapshot's tar headers): the first wins.
    pub fn add_user(&mut self, uid: u32, name: &str) {
        self.users.add(uid, name);
    }

    pub fn add_group(&mut self, gid: u32, name: &str) {
        self.groups.add(gid, name);
    }

    pub fn name_of_uid(&self, uid: u32) -> Option<&str> {
        self.users.names.get(&uid).map(String::as_str)
    }

    pub fn name_of_gid(&self, gid: u32) -> Option<&str> {
        self.groups.names.get(&gid).map(String::as_str)
    }

    pub fn uid_of(&self, name: &str) -> Option<u32> {
        self.users.ids.get(name).copied()
    }

    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.groups.ids.get(name).copied()
    }

    /// `root:root` as `ls -l` shows an owner, a number standing for a name the host does not have.
    pub fn owner(&self, uid: u32, gid: u32) -> String {
        let user = self.name_of_uid(uid).map_or_else(|| uid.to_string(), str::to_owned);
        let group = self.name_of_gid(gid).map_or_else(|| gid.to_string(), str::to_owned);
        format!("{user}:{group}")
    }

    /// Every user, by id.
    pub fn users(&self) -> impl Iterator<Item = (u32, &str)> {
        self.users.names.iter().map(|(id, n)| (*id, n.as_str()))
    }

    /// Every group, by id.
    pub fn groups(&self) -> impl Iterator<Item = (u32, &str)> {
        self.groups.names.iter().map(|(id, n)| (*id, n.as_str()))
    }

    /// Whether no user and no group is known.
    pub fn is_empty(&self) -> bool {
        self.users.names.is_empty() && self.groups.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machines_own_files() {
        let passwd = std::fs::read("/etc/passwd").expect("/etc/passwd");
        let group = std::fs::read("/etc/group").expect("/etc/group");
        let a = Accounts::parse(Some(&passwd), Some(&group)).unwrap();
        assert_eq!(
            (a.name_of_uid(0), a.name_of_gid(0), a.uid_of("root"), a.gid_of("root")),
            (Some("root"), Some("root"), Some(0), Some(0))
        );
        assert_eq!(a.owner(0, 0), "root:root");
        // Every well-formed line of the real files is known by id and by name (first wins).
        let text = String::from_utf8_lossy(&passwd);
        let mut seen = std::collections::HashSet::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
            let f: Vec<&str> = line.split(':').collect();
            let uid: u32 = f[2].parse().unwrap();
            if seen.insert(uid) {
                assert_eq!(a.name_of_uid(uid), Some(f[0]), "{line}");
            }
        }
        assert!(seen.len() > 3, "a real /etc/passwd has several users");
        assert!(a.notes.is_empty(), "this machine's files are well formed: {:?}", a.notes);
    }

    #[test]
    fn hostile_and_odd_lines_are_skipped_with_a_note() {
        let passwd = b"# comment\n\nroot:x:0:0:root:/root:/bin/bash\r\ntoor:x:0:0::/root:/bin/sh\nroot:x:5:5::/:/bin/sh\n\
                       etcd:x:998:998:etcd user:/var/lib/etcd:/sbin/nologin\nshort:x:1\nneg:x:-1:0::/:/bin/sh\n\
                       big:x:4294967296:0::/:/bin/sh\nplus:x:+7:0::/:/bin/sh\n:x:9:9::/:/bin/sh\nbad\x1bname:x:10:10::/:/bin/sh\n\
                       +nisuser::::::\n-@netgroup\nlatin\xff:x:11:11::/:/bin/sh\nspace name:x:12:12::/:/bin/sh\n\
                       extra:x:13:13::/home/extra:/bin/sh:more\nkube:x:4294967295:4294967295::/:/bin/sh";
        let group = b"root:x:0:\netcd:x:998:\nwheel:x:10:alice,bob\nwheel:x:11:\nadm:x:10:\nbroken\n";
        let a = Accounts::parse(Some(passwd), Some(group)).unwrap();
        assert_eq!(a.name_of_uid(0), Some("root"), "the first name for an id wins, as getpwuid answers");
        assert_eq!(a.uid_of("toor"), Some(0));
        assert_eq!(a.uid_of("root"), Some(0), "the first id for a name wins, as getpwnam answers");
        assert_eq!(a.name_of_uid(5), Some("root"), "a later id keeps its own line's name");
        assert_eq!(a.owner(998, 998), "etcd:etcd");
        assert_eq!(a.uid_of("extra"), Some(13));
        assert_eq!(a.uid_of("kube"), Some(u32::MAX));
        assert_eq!((a.name_of_gid(10), a.gid_of("wheel"), a.gid_of("adm")), (Some("wheel"), Some(10), Some(10)));
        assert_eq!(a.owner(4242, 4343), "4242:4343", "an unknown id shows as its number");
        for absent in ["short", "neg", "big", "plus", "", "bad\u{1b}name", "space name", "latin"] {
            assert_eq!(a.uid_of(absent), None, "{absent:?}");
        }
        let notes = &a.notes;
        for want in [
            "/etc/passwd:4: user id 0 is also named toor: the first, root, is the name used",
            "/etc/passwd:5: user root again with id 5: the first, 0, is the id used",
            "/etc/passwd:7: 3 fields, a user line has 7: skipped",
            "/etc/passwd:8: user neg: id \"-1\" is not a number: skipped",
            "/etc/passwd:9: user big: id \"4294967296\" is not a number: skipped",
            "/etc/passwd:10: user plus: id \"+7\" is not a number: skipped",
            "/etc/passwd:11: \"\" is not a user name: skipped",
            "/etc/passwd:12: \"bad\\u{1b}name\" is not a user name: skipped",
            "/etc/passwd:13: a NIS compat entry (+/-): names from NIS are not resolved here",
            "/etc/passwd:14: a NIS compat entry (+/-): names from NIS are not resolved here",
            "/etc/passwd:15: not UTF-8: skipped",
            "/etc/passwd:16: \"space name\" is not a user name: skipped",
            "/etc/group:4: group wheel again with id 11: the first, 10, is the id used",
            "/etc/group:5: group id 10 is also named adm: the first, wheel, is the name used",
            "/etc/group:6: 1 fields, a group line has 4: skipped",
        ] {
            assert!(notes.iter().any(|n| n == want), "{want}\nnot in {notes:#?}");
        }
        assert_eq!(notes.len(), 15, "{notes:#?}");
    }

    #[test]
    fn size_cap_and_absent_files() {
        let huge = vec![b'a'; MAX_ACCOUNTS_FILE + 1];
        let e = Accounts::parse(Some(&huge), None).unwrap_err();
        assert!(e.to_string().starts_with("/etc/passwd: 1048577 bytes, more than the 1048576"), "{e}");
        let a = Accounts::parse(None, None).unwrap();
        assert!(a.is_empty() && a.owner(0, 0) == "0:0");
        let mut a = Accounts::default();
        a.add_user(0, "root");
        a.add_user(0, "toor");
        a.add_group(0, "wheel");
        assert_eq!(a.owner(0, 0), "root:wheel");
    }
}
