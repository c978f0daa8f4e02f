//! Snapshots made by GNU tar itself, as an operator makes one on a node, read back by `files::tar`; and hostile
//! tars (path traversal, links, devices, huge or truncated members, gzip bombs, garbage) refused with clear
//! errors. The files are created by the test with real modes and owners (chmod/chown: the test runs as root,
//! as CI does), and the owner names expected are this machine's, read from its own /etc/passwd and /etc/group.

use std::io::Write as _;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use fleetaudit::files::accounts::Accounts;
use fleetaudit::files::tar::{self, MadeBy, TarError, TarLimits};
use fleetaudit::files::{Entry, FileSet, Kind, Meta, Problem};

const PS: &str = "UID PID PPID C STIME TTY TIME CMD\nroot 1 0 0 10:00 ? 00:00:01 /sbin/init\n\
                  root 812 1 2 10:00 ? 00:01:02 /usr/bin/kubelet --config=/var/lib/kubelet/config.yaml\n";

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}: install GNU tar (apt-get install tar)"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap_or_else(|e| {
        panic!("chown {}: {e}: this test creates files owned by other users and runs as root", path.display())
    });
}

fn write(path: &Path, bytes: &[u8], mode: u32, uid: u32, gid: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    chown(path, uid, gid);
}

/// A node's files under `root`: a kubelet config, a PKI directory, a file owned by nobody:nogroup, a symlink,
/// a hard link, a long path and a file past the 1 MiB limit.
fn node(root: &Path) {
    write(&root.join("ps-ef.txt"), PS.as_bytes(), 0o644, 0, 0);
    write(&root.join("var/lib/kubelet/config.yaml"), b"kind: KubeletConfiguration\nreadOnlyPort: 0\n", 0o644, 0, 0);
    write(&root.join("etc/kubernetes/pki/ca.crt"), b"-----BEGIN CERTIFICATE-----\n", 0o644, 0, 0);
    write(&root.join("etc/kubernetes/pki/ca.key"), b"-----BEGIN PRIVATE KEY-----\n", 0o600, 0, 0);
    std::fs::set_permissions(root.join("etc/kubernetes/pki"), std::fs::Permissions::from_mode(0o750)).unwrap();
    write(&root.join("etc/kubernetes/scheduler.conf"), b"apiVersion: v1\n", 0o640, 65534, 65534);
    symlink("pki/ca.crt", root.join("etc/kubernetes/ca-link.crt")).unwrap();
    std::fs::hard_link(root.join("var/lib/kubelet/config.yaml"), root.join("var/lib/kubelet/config-copy.yaml"))
        .unwrap();
    let long = format!("opt/{}kubelet.conf", "a-directory-name-of-some-length/".repeat(5));
    write(&root.join(long), b"x: 1\n", 0o600, 0, 0);
    write(&root.join("var/log/big.yaml"), &vec![b'#'; 2 << 20], 0o644, 0, 0);
}

fn this_machine() -> Accounts {
    Accounts::parse(Some(&std::fs::read("/etc/passwd").unwrap()), Some(&std::fs::read("/etc/group").unwrap())).unwrap()
}

fn read(path: &Path) -> Result<tar::Snapshot, TarError> {
    tar::read(std::fs::File::open(path).unwrap(), &TarLimits::DEFAULT)
}

fn found(files: &FileSet, path: &str) -> (Kind, u32, u32, u32, Option<Vec<u8>>) {
    match files.get(path) {
        Some(Entry::Found { meta, content, .. }) => {
            (meta.kind, meta.mode, meta.uid, meta.gid, content.as_ref().map(|c| c.bytes.clone()))
        }
        other => panic!("{path}: {other:?}"),
    }
}

fn check_node(s: &tar::Snapshot, prefix: &str) {
    let files = &s.files;
    let p = |rel: &str| format!("{prefix}/{rel}");
    assert_eq!(s.ps, PS.as_bytes());
    assert_eq!(s.made_by, MadeBy::Hand);
    let (kind, mode, uid, gid, bytes) = found(files, &p("var/lib/kubelet/config.yaml"));
    assert_eq!((kind, mode, uid, gid), (Kind::File, 0o644, 0, 0));
    assert_eq!(bytes.as_deref(), Some(&b"kind: KubeletConfiguration\nreadOnlyPort: 0\n"[..]));
    assert_eq!(found(files, &p("var/lib/kubelet/config-copy.yaml")).4, bytes, "a hard link is the file it links to");
    let (kind, mode, uid, gid, _) = found(files, &p("etc/kubernetes/pki/ca.key"));
    assert_eq!((kind, mode, uid, gid), (Kind::File, 0o600, 0, 0));
}

#[test]
fn a_tar_made_by_gnu_tar_reads_back_with_modes_owners_and_names() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node");
    node(&root);
    let machine = this_machine();
    let tarball = dir.path().join("node.tar");
    // As on a node, relative to /: `tar cf node.tar ps-ef.txt var etc opt`.
    run(Command::new("tar").arg("-C").arg(&root).arg("-cf").arg(&tarball).args(["ps-ef.txt", "var", "etc", "opt"]));
    let s = read(&tarball).unwrap();
    check_node(&s, "");
    let files = &s.files;
    let (kind, mode, uid, gid, _) = found(files, "/etc/kubernetes/pki/ca.key");
    assert_eq!((kind, mode, uid, gid), (Kind::File, 0o600, 0, 0));
    let (kind, mode, uid, gid, _) = found(files, "/etc/kubernetes/scheduler.conf");
    assert_eq!((kind, mode, uid, gid), (Kind::File, 0o640, 65534, 65534));
    assert_eq!(
        s.accounts.owner(65534, 65534),
        machine.owner(65534, 65534),
        "the names GNU tar wrote are the node's own (here: this machine's /etc/passwd and /etc/group)"
    );
    assert_eq!(s.accounts.owner(0, 0), "root:root");
    match files.get("/etc/kubernetes/pki") {
        Some(Entry::Found { meta, names, .. }) => {
            assert_eq!((meta.kind, meta.mode), (Kind::Dir, 0o750));
            assert_eq!(
                names.as_deref(),
                Some(&["ca.crt".to_owned(), "ca.key".to_owned()][..]),
                "listing = members under it"
            );
        }
        other => panic!("{other:?}"),
    }
    match files.get("/etc/kubernetes/ca-link.crt") {
        Some(Entry::Problem(Problem::Failed { message })) => assert!(message.contains("tar -h"), "{message}"),
        other => panic!("a symlink is never followed: {other:?}"),
    }
    assert!(s.notes.iter().any(|n| n.contains("ca-link.crt") && n.contains("symbolic link")), "{:?}", s.notes);
    let long = format!("/opt/{}kubelet.conf", "a-directory-name-of-some-length/".repeat(5));
    assert!(long.len() > 100, "a GNU long name");
    assert_eq!(found(files, &long).4.as_deref(), Some(&b"x: 1\n"[..]));
    assert_eq!(
        files.get("/var/log/big.yaml"),
        Some(&Entry::Problem(Problem::TooLarge {
            size: 2 << 20,
            limit: 1 << 20,
            meta: Some(Meta { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, size: 2 << 20 })
        })),
        "past the per-file limit, as the scan would have found it, with its mode and owner from the header"
    );
    assert!(files.get("/etc/kubernetes/admin.conf").is_none(), "not in the snapshot: neither missing nor denied");

    // `tar -h` follows the link, so the link's path holds the certificate.
    let deref = dir.path().join("deref.tar");
    run(Command::new("tar").arg("-C").arg(&root).arg("-chf").arg(&deref).args(["ps-ef.txt", "etc"]));
    let s = read(&deref).unwrap();
    assert_eq!(
        found(&s.files, "/etc/kubernetes/ca-link.crt").4.as_deref(),
        Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
    );
}

#[test]
fn absolute_names_gzip_and_pax_headers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("node");
    node(&root);
    let prefix = root.display().to_string();
    let abs = |rel: &str| format!("{prefix}/{rel}");
    // Absolute paths, as the README tells operators: GNU tar strips the leading `/` (and warns).
    for (name, flags) in
        [("plain.tar", "-cf"), ("gzip.tar.gz", "-czf"), ("pax.tar", "--format=posix -cf"), ("keep.tar", "-Pcf")]
    {
        let tarball = dir.path().join(name);
        let mut cmd = Command::new("tar");
        cmd.current_dir(&root).args(flags.split(' ')).arg(&tarball).arg("ps-ef.txt");
        cmd.args([abs("var/lib/kubelet"), abs("etc/kubernetes/pki"), abs("etc/kubernetes/scheduler.conf")]);
        run(&mut cmd);
        let s = read(&tarball).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (kind, mode, uid, gid, bytes) = found(&s.files, &abs("etc/kubernetes/scheduler.conf"));
        assert_eq!(
            (kind, mode, uid, gid, bytes.as_deref()),
            (Kind::File, 0o640, 65534, 65534, Some(&b"apiVersion: v1\n"[..])),
            "{name}"
        );
        assert_eq!(s.accounts.owner(65534, 65534), this_machine().owner(65534, 65534), "{name}");
        assert_eq!(
            found(&s.files, &abs("var/lib/kubelet/config-copy.yaml")).4,
            found(&s.files, &abs("var/lib/kubelet/config.yaml")).4,
            "{name}"
        );
        assert_eq!(s.ps, PS.as_bytes());
    }
}

#[test]
fn fleetaudit_snapshots_read_back_with_gnu_tar_too() {
    // What `fleetaudit snapshot` writes, GNU tar lists with the same modes and owners.
    let mut files = FileSet::default();
    let meta = |kind, mode, uid, gid| fleetaudit::files::Meta { kind, mode, uid, gid, size: 5 };
    files.insert(
        "/etc/kubernetes/scheduler.conf".into(),
        Entry::Found {
            meta: meta(Kind::File, 0o640, 65534, 65534),
            content: Some(fleetaudit::files::Content::plain(b"a: 1\n".to_vec())),
            names: None,
        },
    );
    files.insert("/var/lib/etcd".into(), Entry::Problem(Problem::Denied));
    let dir = tempfile::tempdir().unwrap();
    let tarball = dir.path().join("snap.tar");
    let mut out = std::fs::File::create(&tarball).unwrap();
    tar::write(&mut out, PS.as_bytes(), &files, &this_machine()).unwrap();
    out.flush().unwrap();
    let listing = Command::new("tar").arg("--numeric-owner").arg("-tvf").arg(&tarball).output().unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    let line =
        listing.lines().find(|l| l.ends_with("etc/kubernetes/scheduler.conf")).unwrap_or_else(|| panic!("{listing}"));
    assert!(line.starts_with("-rw-r----- 65534/65534"), "{line}");
    let first = listing.lines().next().unwrap();
    assert!(first.ends_with(" ps-ef.txt"), "ps-ef.txt at the top: {listing}");
    let named = Command::new("tar").arg("-tvf").arg(&tarball).output().unwrap();
    let named = String::from_utf8(named.stdout).unwrap();
    let want = this_machine().owner(65534, 65534).replace(':', "/");
    assert!(named.lines().any(|l| l.contains(&want) && l.ends_with("scheduler.conf")), "{named}");
    let back = read(&tarball).unwrap();
    assert_eq!((back.files, back.made_by), (files, MadeBy::Fleetaudit));
}

/// A raw tar header (ustar) with any name and type, for tars GNU tar would not write.
fn raw_member(name: &[u8], kind: u8, size: u64, data: &[u8]) -> Vec<u8> {
    raw_link(name, kind, size, data, b"")
}

fn raw_link(name: &[u8], kind: u8, size: u64, data: &[u8], link: &[u8]) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    h[157..157 + link.len()].copy_from_slice(link);
    let octal = |h: &mut [u8; 512], at: usize, len: usize, v: u64| {
        let s = format!("{v:0width$o}\0", width = len - 1);
        h[at..at + len].copy_from_slice(s.as_bytes());
    };
    octal(&mut h, 100, 8, 0o644);
    octal(&mut h, 108, 8, 0);
    octal(&mut h, 116, 8, 0);
    octal(&mut h, 124, 12, size);
    octal(&mut h, 136, 12, 0);
    h[156] = kind;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn with_ps(members: &[Vec<u8>]) -> Vec<u8> {
    let mut out = raw_member(b"ps-ef.txt", b'0', PS.len() as u64, PS.as_bytes());
    for m in members {
        out.extend_from_slice(m);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn read_bytes(bytes: &[u8], limits: &TarLimits) -> Result<tar::Snapshot, TarError> {
    tar::read(bytes, limits)
}

#[test]
fn hostile_tars_are_refused_with_clear_errors() {
    let d = TarLimits::DEFAULT;
    let err = |bytes: &[u8], limits: &TarLimits| read_bytes(bytes, limits).unwrap_err().to_string();

    let e = err(&with_ps(&[raw_member(b"etc/../../root/.ssh/id_rsa", b'0', 3, b"key")]), &d);
    assert!(e.contains("etc/../../root/.ssh/id_rsa") && e.contains("climbs out"), "{e}");
    let e = err(&with_ps(&[raw_member(b"../etc/shadow", b'0', 3, b"abc")]), &d);
    assert!(e.contains("climbs out"), "{e}");
    let hard = raw_link(b"var/x", b'1', 0, b"", b"var/none");
    let s = read_bytes(&with_ps(&[hard]), &d).unwrap();
    assert!(
        matches!(s.files.get("/var/x"), Some(Entry::Problem(Problem::Failed { message })) if message.contains("hard link to /var/none"))
    );

    // Links and devices: recorded as problems of their own paths, never followed or read.
    let s =
        read_bytes(&with_ps(&[raw_member(b"dev/sda", b'4', 0, b""), raw_member(b"x/fifo", b'6', 0, b"")]), &d).unwrap();
    for path in ["/dev/sda", "/x/fifo"] {
        assert!(
            matches!(s.files.get(path), Some(Entry::Problem(Problem::Failed { message })) if message.contains("device")),
            "{path}"
        );
    }
    let link = raw_link(b"etc/kubernetes/admin.conf", b'2', 0, b"", b"/etc/shadow");
    let s = read_bytes(&with_ps(&[link]), &d).unwrap();
    assert!(
        matches!(s.files.get("/etc/kubernetes/admin.conf"), Some(Entry::Problem(Problem::Failed { message })) if message.contains("not follow"))
    );

    // Sizes: a huge declared member in a short archive is truncated; one within the archive but past the
    // per-file limit is TooLarge; the whole archive past its limit is refused.
    let mut huge = raw_member(b"var/huge", b'0', 1 << 30, b"");
    huge.extend_from_slice(&[0u8; 4096]);
    let e = err(&with_ps(&[huge]), &d);
    assert!(e.contains("truncated") && e.contains("var/huge"), "{e}");
    let small = TarLimits { max_total: 64 << 10, max_file: 1024, ..d };
    let s = read_bytes(&with_ps(&[raw_member(b"var/big", b'0', 2048, &[b'a'; 2048])]), &small).unwrap();
    assert_eq!(
        s.files.get("/var/big"),
        Some(&Entry::Problem(Problem::TooLarge {
            size: 2048,
            limit: 1024,
            meta: Some(Meta { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, size: 2048 })
        }))
    );
    let e = err(&with_ps(&[raw_member(b"var/big", b'0', 100 << 10, &vec![b'a'; 100 << 10])]), &small);
    assert!(e.contains("larger than 65536 bytes"), "{e}");
    let many: Vec<Vec<u8>> = (0..10).map(|i| raw_member(format!("f{i}").as_bytes(), b'0', 0, b"")).collect();
    let e = err(&with_ps(&many), &TarLimits { max_members: 5, ..d });
    assert!(e.contains("more than 5 members"), "{e}");

    // A gzip bomb: 4 MiB of zeros in a member compress to a few KiB; the uncompressed cap refuses it.
    let bomb = with_ps(&[raw_member(b"var/zeros", b'0', 4 << 20, &vec![0u8; 4 << 20])]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bomb).unwrap();
    let gz = gz.finish().unwrap();
    assert!(gz.len() < 64 << 10);
    let e = err(&gz, &TarLimits { max_total: 1 << 20, ..d });
    assert!(e.contains("uncompressed") && e.contains("larger than 1048576"), "{e}");

    // Truncated anywhere, garbage, empty, no ps-ef.txt, a broken gzip stream.
    let whole = with_ps(&[raw_member(b"var/a", b'0', 700, &[b'a'; 700])]);
    for cut in [100, 600, 1200] {
        let e = err(&whole[..cut], &d);
        assert!(e.contains("truncated") || e.contains("not a tar"), "cut at {cut}: {e}");
    }
    let e = err(
        b"this is not a tar file at all, just some text that is long enough to fill a header block. "
            .repeat(8)
            .as_slice(),
        &d,
    );
    assert!(e.contains("not a tar archive"), "{e}");
    assert_eq!(err(b"", &d), TarError::NoPs.to_string());
    let e = err(&raw_member(b"var/a", b'0', 0, b""), &d);
    assert!(e.contains("no ps-ef.txt") && e.contains("ps -ef > ps-ef.txt"), "{e}");
    let e = err(&gz[..gz.len() / 2], &TarLimits { max_total: 8 << 20, ..d });
    assert!(e.contains("truncated"), "half a gzip stream: {e}");
    let e = err(&[0x1f, 0x8b, 0, 1, 2, 3, 4, 5, 6, 7], &d);
    assert!(e.contains("gzip") || e.contains("not a tar") || e.contains("truncated"), "{e}");

    // A non-UTF-8 name, a sparse member.
    let e = err(&with_ps(&[raw_member(b"etc/\xff", b'0', 0, b"")]), &d);
    assert!(e.contains("not UTF-8"), "{e}");
    let e = err(&with_ps(&[raw_member(b"var/sparse", b'S', 0, b"")]), &d);
    assert!(e.contains("sparse") || e.contains("not a tar"), "{e}");
}

#[test]
fn an_altered_fleetaudit_snapshot_is_refused() {
    let mut files = FileSet::default();
    files.insert("/var/lib/etcd".into(), Entry::Problem(Problem::Denied));
    let mut out = Vec::new();
    tar::write(&mut out, PS.as_bytes(), &files, &Accounts::default()).unwrap();
    // An extra member the manifest does not list.
    let mut extra = out[..out.len() - 1024].to_vec();
    extra.extend(raw_member(b"etc/extra", b'0', 1, b"x"));
    extra.extend_from_slice(&[0u8; 1024]);
    let e = read_bytes(&extra, &TarLimits::DEFAULT).unwrap_err().to_string();
    assert!(
        e.contains("fleetaudit-snapshot.json") && e.contains("/etc/extra is in the tar but not in the manifest"),
        "{e}"
    );
    // A manifest that is not JSON.
    let mut bad = with_ps(&[raw_member(b"fleetaudit-snapshot.json", b'0', 5, b"{nope")]);
    bad.truncate(bad.len());
    let e = read_bytes(&bad, &TarLimits::DEFAULT).unwrap_err().to_string();
    assert!(e.contains("fleetaudit-snapshot.json") && e.contains("write it again"), "{e}");
}
