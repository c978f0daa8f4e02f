//! `fleetaudit eval`: judges a host offline, from a captured `ps -ef` or a snapshot tar (`fleetaudit snapshot`,
//! or one made by hand on the node), with exactly the engine a scan uses: the same batches of file requests,
//! answered from the tar instead of SFTP.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::{BadInput, Exit, FailOn, Format, read_capture};
use crate::files::tar::{MadeBy, Snapshot, TarLimits};
use crate::files::{Answering, Content, Entry, FileSet, Kind, Meta};
use crate::model::Role;
use crate::output::{self, FindingJson, Style};
use crate::ps;
use crate::rules::{Engine, RuleSet};

/// What `eval` judges: a process table alone, or a snapshot with files.
struct Input {
    table: ps::ProcessTable,
    files: FileSet,
    /// For a snapshot: who made it, what the reader noted, and how many batches the engine asked.
    snapshot: Option<(MadeBy, Vec<String>, usize)>,
}

/// Whether the bytes are a tar (`ustar` at offset 257) or gzip.
fn is_archive(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b]) || bytes.get(257..262) == Some(b"ustar")
}

fn load(engine: &Engine, file: &Path) -> anyhow::Result<Input> {
    let bytes = read_snapshot_or_capture(file)?;
    if !is_archive(&bytes) {
        let table = ps::parse(&bytes).with_context(|| format!("cannot read {} as `ps -ef` output", file.display()))?;
        return Ok(Input { table, files: FileSet::none(), snapshot: None });
    }
    let mut snap = crate::files::tar::read(&bytes[..], &TarLimits::DEFAULT)
        .map_err(|e| BadInput(format!("{}: {e}", file.display())))?;
    let table = ps::parse(&snap.ps)
        .with_context(|| format!("cannot read ps-ef.txt in {} as `ps -ef` output", file.display()))?;
    if snap.made_by == MadeBy::Hand {
        accounts_from_headers(&mut snap);
    }
    let mut answering = Answering { files: &snap.files, hand_made: snap.made_by == MadeBy::Hand };
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let (files, rounds) = rt.block_on(engine.gather(&table, &mut answering));
    Ok(Input { table, files, snapshot: Some((snap.made_by, snap.notes, rounds)) })
}

/// A hand-made tar without /etc/passwd or /etc/group still names each member's owner in its headers (GNU tar
/// records the host's user and group names): those stand in for the account files, and the notes say so.
fn accounts_from_headers(snap: &mut Snapshot) {
    for (path, entries, what) in [
        (
            "/etc/passwd",
            snap.accounts.users().map(|(id, n)| format!("{n}:x:{id}:0::/:/nonexistent\n")).collect::<String>(),
            "user",
        ),
        ("/etc/group", snap.accounts.groups().map(|(id, n)| format!("{n}:x:{id}:\n")).collect::<String>(), "group"),
    ] {
        if snap.files.get(path).is_some() || entries.is_empty() {
            continue;
        }
        let meta = Meta { kind: Kind::File, mode: 0o644, uid: 0, gid: 0, size: entries.len() as u64 };
        snap.files.insert(
            path.to_owned(),
            Entry::Found { meta, content: Some(Content::plain(entries.into_bytes())), names: None },
        );
        snap.notes.push(format!("{path} is not in the snapshot: {what} names come from the tar headers"));
    }
}

fn read_snapshot_or_capture(file: &Path) -> anyhow::Result<Vec<u8>> {
    if file.as_os_str() == "-" {
        return read_capture(file);
    }
    // A snapshot may be larger than a process table: the tar reader applies its own limits as it reads.
    let len = std::fs::metadata(file).map_err(|e| BadInput(format!("cannot open {}: {e}", file.display())))?.len();
    if len > TarLimits::DEFAULT.max_total {
        anyhow::bail!(BadInput(format!(
            "{} is {len} bytes, larger than a snapshot may be ({} bytes)",
            file.display(),
            TarLimits::DEFAULT.max_total
        )));
    }
    std::fs::read(file).map_err(|e| BadInput(format!("cannot read {}: {e}", file.display())).into())
}

pub(super) struct EvalArgs<'a> {
    pub file: &'a Path,
    pub format: Format,
    pub roles: &'a [Role],
    pub rules: &'a [std::path::PathBuf],
    pub fail_on: FailOn,
    pub automated_only: bool,
}

pub(super) fn run(args: EvalArgs<'_>, out: &mut dyn Write, style: Style) -> anyhow::Result<Exit> {
    let engine = Engine::new(RuleSet::load(args.rules)?);
    let file = args.file;
    let input = load(&engine, file)?;
    let table = &input.table;
    let findings = engine.judge_with_files(table, &input.files, args.roles);
    let manual =
        |f: &crate::rules::Finding| engine.rules.rules[f.rule].assessment == crate::rules::pack::Assessment::Manual;
    let totals = output::Totals::of(findings.iter().map(|f| (f.status, manual(f))));
    match args.format {
        Format::Json => {
            let mut doc = serde_json::json!({
                "source": file.display().to_string(),
                "ps_format": table.format,
                "processes": table.processes.len(),
                "rules_version": engine.rules.version(),
                "summary": totals,
                "findings": findings.iter().map(|f| FindingJson::new(&engine.rules, f)).collect::<Vec<_>>(),
            });
            if let Some((made_by, notes, _)) = &input.snapshot {
                doc["snapshot"] = serde_json::json!({
                    "made_by": match made_by { MadeBy::Fleetaudit => "fleetaudit", MadeBy::Hand => "hand" },
                    "notes": notes,
                });
                doc["files"] = serde_json::to_value(output::files_json(
                    &input.files,
                    &engine.certificate_roles(table, &input.files),
                ))?;
            }
            serde_json::to_writer_pretty(&mut *out, &doc)?;
            writeln!(out)?;
        }
        Format::Text => {
            writeln!(
                out,
                "{}: {} table, {} processes; rules {}",
                file.display(),
                table.format,
                table.processes.len(),
                engine.rules.version()
            )?;
            match &input.snapshot {
                None => writeln!(
                    out,
                    "no files: every setting a file holds and every file check is an error; judge a snapshot \
                     (`fleetaudit snapshot`, or a tar made on the node: see the README) to decide them\n"
                )?,
                Some((made_by, notes, rounds)) => {
                    let who = match made_by {
                        MadeBy::Fleetaudit => "made by fleetaudit snapshot",
                        MadeBy::Hand => {
                            "made by hand: a path it leaves out is unknown unless a directory it holds would hold it"
                        }
                    };
                    writeln!(out, "snapshot {who}; {} paths used in {rounds} batches", input.files.len())?;
                    for n in notes {
                        writeln!(out, "  note: {n}")?;
                    }
                    writeln!(out)?;
                }
            }
            output::write_findings_text(&mut *out, &engine.rules, &findings, style)?;
        }
    }
    out.flush()?;
    Ok(Exit::for_summary(totals.judged(args.automated_only)).under(args.fail_on))
}
