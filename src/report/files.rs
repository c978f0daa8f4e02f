//! The report's view of the files each host's scan read: the "Files read" table of a host page (one fragment per
//! file set, shared by the host pages that show it) and the file drift of the host pages and the overview.
//!
//! Owns: walking a scan's file sets and file changes in host-name order through the store's paged reads
//! ([`Store::scan_files`], [`Store::file_changes`]), so memory holds one page of each however large the fleet,
//! and turning records into rows. Must not touch: SQL (the store owns it), contents (never shown: the database
//! keeps them).

use std::cmp::Ordering;

use askama::Template;

use super::ReportError;
use crate::store::{FileChange, FileChangeKind, FileRecord, FilesPage, Store};

/// Hosts read per page of file sets, and changes per page of file changes.
const FILES_PAGE: u32 = 500;
/// Hex digits of a SHA-256 shown (the database has the whole).
const SHORT_SHA: usize = 12;

/// One path as the "Files read" table shows it.
#[derive(Debug, Clone)]
pub struct FileView {
    pub path: String,
    /// `-rw-------`; empty for a problem.
    pub permissions: String,
    pub owner: String,
    pub size: String,
    pub sha256: String,
    pub redacted: bool,
    /// `denied`, `missing`, ...; empty for a path learned.
    pub problem: String,
    pub problem_message: String,
}

impl FileView {
    fn of(f: &FileRecord) -> FileView {
        FileView {
            path: f.path.clone(),
            permissions: f.permissions().unwrap_or_default(),
            owner: f.owner.clone().unwrap_or_default(),
            size: f.size.map(|s| s.to_string()).unwrap_or_default(),
            sha256: f.sha256.as_deref().map(short).unwrap_or_default().to_string(),
            redacted: f.redacted,
            problem: f.problem.clone().unwrap_or_default(),
            problem_message: f.problem_message.clone().unwrap_or_default(),
        }
    }
}

fn short(sha: &str) -> &str {
    sha.get(..SHORT_SHA).unwrap_or(sha)
}

/// The "Files read" table of one file set; rendered once and shared by every host page showing the set.
#[derive(Template)]
#[template(path = "files.html")]
pub struct FilesFragment {
    pub files: Vec<FileView>,
}

impl FilesFragment {
    pub fn of(files: &[FileRecord]) -> FilesFragment {
        // The store reads a set in path order (bytes, as SQLite compares them); sorted here too so the table's
        // order does not depend on the query.
        let mut files: Vec<FileView> = files.iter().map(FileView::of).collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        FilesFragment { files }
    }
}

/// One changed path, as the drift tables show it.
#[derive(Debug, Clone)]
pub struct FileChangeView {
    /// The host page, relative to the overview.
    pub file: String,
    pub host: String,
    pub path: String,
    pub previous_scan_id: i64,
    /// What differs, each as `mode -rw------- → -rw-r--r--`.
    pub details: Vec<String>,
}

impl FileChangeView {
    pub fn of(c: &FileChange) -> FileChangeView {
        let or_none = |v: &Option<String>| v.clone().unwrap_or_else(|| "none".into());
        let state = |permissions: &Option<String>, owner: &Option<String>, problem: &Option<String>| match problem {
            Some(p) => p.clone(),
            None => format!("{} {}", or_none(permissions), or_none(owner)),
        };
        let details = c
            .change
            .iter()
            .map(|kind| match kind {
                FileChangeKind::Added => format!("added: {}", state(&c.permissions, &c.owner, &c.problem)),
                FileChangeKind::Removed => {
                    format!("removed: was {}", state(&c.previous_permissions, &c.previous_owner, &c.previous_problem))
                }
                FileChangeKind::Problem => {
                    let side = |permissions: &Option<String>, problem: &Option<String>| match problem {
                        Some(p) => p.clone(),
                        None => format!("readable ({})", or_none(permissions)),
                    };
                    format!(
                        "problem {} → {}",
                        side(&c.previous_permissions, &c.previous_problem),
                        side(&c.permissions, &c.problem)
                    )
                }
                FileChangeKind::Kind => {
                    format!("type {} → {}", or_none(&c.previous_permissions), or_none(&c.permissions))
                }
                FileChangeKind::Mode => {
                    format!("mode {} → {}", or_none(&c.previous_permissions), or_none(&c.permissions))
                }
                FileChangeKind::Owner => format!("owner {} → {}", or_none(&c.previous_owner), or_none(&c.owner)),
                FileChangeKind::Content => match (&c.previous_sha256, &c.sha256) {
                    (None, None) => "size changed (only stat'ed)".to_string(),
                    (p, n) => format!(
                        "content sha256 {} → {}",
                        p.as_deref().map_or("none", short),
                        n.as_deref().map_or("none", short)
                    ),
                },
            })
            .collect();
        FileChangeView {
            file: format!("hosts/{}.html", super::file_name(&c.host)),
            host: c.host.clone(),
            path: c.path.clone(),
            previous_scan_id: c.previous_scan_id,
            details,
        }
    }
}

/// A scan's file sets in host-name order, a page of hosts at a time.
pub struct SetCursor<'s> {
    store: &'s Store,
    scan_id: i64,
    page: FilesPage,
    next: usize,
    done: bool,
}

impl<'s> SetCursor<'s> {
    pub fn new(store: &'s Store, scan_id: i64) -> SetCursor<'s> {
        SetCursor { store, scan_id, page: FilesPage::default(), next: 0, done: false }
    }

    /// The files of `host`'s set (`None`: the scan has no files for it). Hosts must be asked in name order (as
    /// bytes compare, which is SQLite's order): the cursor only moves forward.
    pub async fn files(&mut self, host: &str) -> Result<Option<&[FileRecord]>, ReportError> {
        let set = loop {
            if let Some((name, set)) = self.page.hosts.get(self.next) {
                match name.as_str().cmp(host) {
                    Ordering::Less => self.next += 1,
                    Ordering::Equal => {
                        self.next += 1;
                        break Some(*set);
                    }
                    Ordering::Greater => break None,
                }
                continue;
            }
            if self.done {
                break None;
            }
            let after = self.page.hosts.last().map(|(name, _)| name.clone());
            self.page = self.store.scan_files(self.scan_id, after.as_deref(), FILES_PAGE, false).await?;
            self.next = 0;
            self.done = self.page.hosts.len() < FILES_PAGE as usize;
        };
        Ok(set.and_then(|set| self.page.sets.get(&set)).map(Vec::as_slice))
    }
}

/// A scan's file changes in (host, path) order, a page at a time; keeps the first `shown` of them for the
/// overview and counts the rest.
pub struct ChangeCursor<'s> {
    store: &'s Store,
    scan_id: i64,
    page: Vec<FileChange>,
    next: usize,
    last: Option<FileChange>,
    done: bool,
    shown: usize,
    /// The first `shown` changes of the scan.
    pub first: Vec<FileChange>,
    /// Every change read.
    pub total: usize,
}

impl<'s> ChangeCursor<'s> {
    pub fn new(store: &'s Store, scan_id: i64, shown: usize) -> ChangeCursor<'s> {
        ChangeCursor {
            store,
            scan_id,
            page: Vec::new(),
            next: 0,
            last: None,
            done: false,
            shown,
            first: Vec::new(),
            total: 0,
        }
    }

    async fn fill(&mut self) -> Result<bool, ReportError> {
        if self.next < self.page.len() {
            return Ok(true);
        }
        if self.done {
            return Ok(false);
        }
        if let Some(last) = self.page.pop() {
            self.last = Some(last);
        }
        self.page = self.store.file_changes(self.scan_id, None, self.last.as_ref(), FILES_PAGE).await?;
        self.next = 0;
        self.done = self.page.len() < FILES_PAGE as usize;
        Ok(!self.page.is_empty())
    }

    fn take(&mut self) -> FileChange {
        let c = self.page[self.next].clone();
        self.next += 1;
        self.total += 1;
        if self.first.len() < self.shown {
            self.first.push(c.clone());
        }
        c
    }

    /// The changes of `host`, at most `limit` of them, and how many more there are. Hosts must be asked in name
    /// order.
    pub async fn of_host(&mut self, host: &str, limit: usize) -> Result<(Vec<FileChange>, usize), ReportError> {
        let (mut changes, mut more) = (Vec::new(), 0);
        while self.fill().await? {
            match self.page[self.next].host.as_str().cmp(host) {
                Ordering::Less => {
                    self.take();
                }
                Ordering::Equal => {
                    let c = self.take();
                    if changes.len() < limit {
                        changes.push(c);
                    } else {
                        more += 1;
                    }
                }
                Ordering::Greater => break,
            }
        }
        Ok((changes, more))
    }

    /// Reads (and counts) the changes no host was asked about.
    pub async fn finish(&mut self) -> Result<(), ReportError> {
        while self.fill().await? {
            self.take();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(kinds: &[FileChangeKind]) -> FileChange {
        FileChange {
            scan_id: 2,
            previous_scan_id: 1,
            host: "cp 1".into(),
            path: "/etc/kubernetes/admin.conf".into(),
            change: kinds.to_vec(),
            previous_mode: Some(0o600),
            mode: Some(0o644),
            previous_permissions: Some("-rw-------".into()),
            permissions: Some("-rw-r--r--".into()),
            previous_owner: Some("root:root".into()),
            owner: Some("kube:kube".into()),
            previous_sha256: Some("a".repeat(64)),
            sha256: Some("b".repeat(64)),
            previous_problem: None,
            problem: None,
        }
    }

    #[test]
    fn each_kind_of_change_says_what_it_was_and_is() {
        use FileChangeKind::*;
        let v = FileChangeView::of(&change(&[Mode, Owner, Content]));
        assert_eq!(
            v.details,
            [
                "mode -rw------- → -rw-r--r--".to_string(),
                "owner root:root → kube:kube".into(),
                format!("content sha256 {} → {}", "a".repeat(12), "b".repeat(12)),
            ]
        );
        assert_eq!(v.file, "hosts/cp_1.html");
        let added =
            FileChange { previous_permissions: None, previous_owner: None, previous_sha256: None, ..change(&[Added]) };
        assert_eq!(FileChangeView::of(&added).details, ["added: -rw-r--r-- kube:kube"]);
        let removed = FileChange { permissions: None, owner: None, sha256: None, ..change(&[Removed]) };
        assert_eq!(FileChangeView::of(&removed).details, ["removed: was -rw------- root:root"]);
        let denied = FileChange {
            permissions: None,
            owner: None,
            sha256: None,
            problem: Some("denied".into()),
            ..change(&[Problem])
        };
        assert_eq!(FileChangeView::of(&denied).details, ["problem readable (-rw-------) → denied"]);
        let stat_only = FileChange { previous_sha256: None, sha256: None, ..change(&[Content]) };
        assert_eq!(FileChangeView::of(&stat_only).details, ["size changed (only stat'ed)"]);
        let kind = FileChange { permissions: Some("drwxr-xr-x".into()), ..change(&[Kind]) };
        assert_eq!(FileChangeView::of(&kind).details, ["type -rw------- → drwxr-xr-x"]);
    }

    #[test]
    fn a_file_row_shows_no_contents_and_a_short_hash() {
        let record = FileRecord {
            path: "/etc/x".into(),
            kind: Some("file".into()),
            mode: Some(0o600),
            uid: Some(0),
            gid: Some(0),
            owner: Some("root:root".into()),
            size: Some(3),
            sha256: Some("c".repeat(64)),
            redacted: true,
            content: Some(b"top secret".to_vec()),
            problem: None,
            problem_message: None,
            roles: Vec::new(),
        };
        let html = FilesFragment::of(&[record]).render().unwrap();
        assert!(html.contains("<td><code>-rw-------</code></td><td>root:root</td><td class=\"n\">3</td>"), "{html}");
        assert!(html.contains(&format!("<code>{}</code> <span class=\"muted\">redacted</span>", "c".repeat(12))));
        assert!(!html.contains("top secret") && !html.contains(&"c".repeat(13)), "{html}");
        assert!(FilesFragment::of(&[]).render().unwrap().contains("read no file"));
    }
}
