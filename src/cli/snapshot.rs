//! `fleetaudit snapshot`: reads one host as a scan does (its `ps -ef`, then the files its processes name, over
//! SFTP, secrets redacted as they arrive) and writes it as a tar that `fleetaudit eval` judges offline with the
//! same verdicts (the format is `files::tar`'s).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;

use super::{BadInput, Exit};
use crate::files::accounts::Accounts;
use crate::rules::{Engine, RuleSet};

pub(super) struct SnapshotArgs<'a> {
    pub inventory: &'a Path,
    pub ssh_config: Option<PathBuf>,
    pub host: &'a str,
    pub out: &'a Path,
    pub rules: &'a [PathBuf],
}

pub(super) fn run(args: SnapshotArgs<'_>, out: &mut dyn Write) -> anyhow::Result<Exit> {
    let options = crate::inventory::LoadOptions { ssh_config: args.ssh_config.clone() };
    let inventory = crate::inventory::load_with(args.inventory, &options)?;
    let host = inventory.host(args.host).ok_or_else(|| {
        BadInput(format!(
            "no host in {} is named {}; `fleetaudit inventory check -i {}` lists them",
            args.inventory.display(),
            args.host,
            args.inventory.display()
        ))
    })?;
    let engine = Arc::new(Engine::new(RuleSet::load(args.rules)?));
    let transport = crate::ssh::Transport::for_inventory(&inventory)?;
    let rt = super::runtime()?;
    let snap = rt.block_on(crate::scan::snapshot_host(&transport, &engine, host))?;
    let text = |path: &str| snap.files.get(path).and_then(crate::files::Entry::content).map(|c| c.bytes.as_slice());
    let accounts = Accounts::parse(text("/etc/passwd"), text("/etc/group")).unwrap_or_default();
    let mut tar = Vec::new();
    crate::files::tar::write(&mut tar, &snap.ps, &snap.files, &accounts).context("writing the snapshot")?;
    if args.out.as_os_str() == "-" {
        std::io::stdout().write_all(&tar)?;
    } else {
        // Written beside the target and renamed, so a failed run leaves no half a snapshot.
        let tmp = args.out.with_extension("tar.partial");
        std::fs::write(&tmp, &tar).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, args.out).with_context(|| format!("writing {}", args.out.display()))?;
        let problems = snap.files.iter().filter(|(_, e)| e.problem().is_some()).count();
        writeln!(
            out,
            "{}: ps -ef and {} paths ({problems} could not be read) in {} batches -> {} ({} bytes)\njudge it with: \
             fleetaudit eval {}",
            host.name,
            snap.files.len(),
            snap.rounds,
            args.out.display(),
            tar.len(),
            args.out.display()
        )?;
    }
    Ok(Exit::Ok)
}
