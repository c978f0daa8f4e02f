//! The fleet matrix: hosts × rules of one scan, a page per [`MATRIX_PAGE`] hosts.
//!
//! Owns: `matrix.html`, `matrix-2.html`, ...: rows are hosts grouped by cluster (clusters and hosts by name),
//! columns the rules grouped by component (components by name, rules by CIS number); each cell the verdict's
//! status as a symbol and a colour, linked to the verdict on the host's page. A host that could not be audited
//! is one row-wide cell saying why. Must not touch: the database (it draws from [`ScanData`]).

use std::cmp::Ordering;

use askama::Template;

use super::{PageLink, ReportError, ScanData, ScanHost, Writer, file_name, paged};
use crate::store::RuleRow;

/// Hosts per matrix page: 92 rules a row keep a page under a megabyte.
pub const MATRIX_PAGE: usize = 100;

/// A component's columns.
#[derive(Debug, Clone)]
pub struct ColumnGroup {
    pub component: String,
    pub rules: usize,
}

/// One rule's column.
#[derive(Debug, Clone)]
pub struct Column {
    pub file: String,
    pub cis: String,
    pub title: String,
}

/// A cell: `p`, `f`, `e` or `n` (pass, fail, error, not applicable) and its symbol; `-` when the host's
/// verdicts do not include the rule.
#[derive(Debug, Clone)]
pub struct Cell {
    pub class: &'static str,
    pub symbol: &'static str,
    pub status: &'static str,
    pub anchor: String,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub file: String,
    pub name: String,
    /// Empty when audited; otherwise `kind: message`.
    pub error: String,
    pub cells: Vec<Cell>,
    pub fail: i64,
}

#[derive(Debug, Clone)]
pub struct ClusterRows {
    pub cluster: String,
    pub rows: Vec<Row>,
}

/// Where a cluster's hosts are: its name and the pages they are on.
#[derive(Debug, Clone)]
pub struct ClusterPages {
    pub cluster: String,
    pub hosts: usize,
    pub pages: Vec<PageLink>,
}

#[derive(Template)]
#[template(path = "matrix.html")]
struct MatrixPage<'a> {
    root: &'static str,
    title: String,
    scan_id: i64,
    groups: &'a [ColumnGroup],
    columns: &'a [Column],
    clusters: Vec<ClusterRows>,
    index: &'a [ClusterPages],
    pages: Vec<PageLink>,
    first: usize,
    last: usize,
    total: usize,
}

/// CIS numbers in numeric order (`1.2.9` before `1.2.10`); anything else after, as text.
fn cis_order(a: &str, b: &str) -> Ordering {
    let parts = |s: &str| s.split('.').map(|p| p.parse::<u32>().ok()).collect::<Option<Vec<u32>>>();
    match (parts(a), parts(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => a.cmp(b),
    }
}

fn status_cell(status: &str, anchor: String) -> Cell {
    let (class, symbol, status) = match status {
        "pass" => ("p", "✓", "pass"),
        "fail" => ("f", "✗", "fail"),
        "error" => ("e", "!", "error"),
        "not_applicable" => ("n", "·", "not applicable"),
        _ => ("n", "?", "unknown"),
    };
    Cell { class, symbol, status, anchor }
}

pub(super) fn write(
    w: &mut Writer,
    dir: &std::path::Path,
    scan_id: i64,
    data: &ScanData<'_>,
) -> Result<usize, ReportError> {
    let mut rules: Vec<&RuleRow> = data.rules.iter().collect();
    rules.sort_by(|a, b| {
        a.component.cmp(&b.component).then_with(|| cis_order(&a.cis, &b.cis)).then(a.rule_id.cmp(&b.rule_id))
    });
    let mut groups: Vec<ColumnGroup> = Vec::new();
    for r in &rules {
        match groups.last_mut() {
            Some(g) if g.component == r.component => g.rules += 1,
            _ => groups.push(ColumnGroup { component: r.component.clone(), rules: 1 }),
        }
    }
    let columns: Vec<Column> = rules
        .iter()
        .map(|r| Column {
            file: format!("rules/{}.html", file_name(&r.rule_id)),
            cis: r.cis.clone(),
            title: format!("{} ({})", r.title, r.rule_id),
        })
        .collect();

    // Hosts by cluster, then name; hosts without a cluster last.
    let mut hosts: Vec<&ScanHost> = data.hosts.iter().collect();
    hosts.sort_by(|a, b| (a.cluster.is_none(), &a.cluster, &a.name).cmp(&(b.cluster.is_none(), &b.cluster, &b.name)));
    let cluster_of = |h: &ScanHost| h.cluster.clone().unwrap_or_else(|| "(no cluster)".into());
    let pages = hosts.len().div_ceil(MATRIX_PAGE).max(1);
    let mut index: Vec<ClusterPages> = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let page = i / MATRIX_PAGE + 1;
        let cluster = cluster_of(h);
        if index.last().is_none_or(|c| c.cluster != cluster) {
            index.push(ClusterPages { cluster, hosts: 0, pages: Vec::new() });
        }
        let c = index.last_mut().expect("pushed");
        c.hosts += 1;
        if c.pages.last().is_none_or(|p| p.number != page) {
            c.pages.push(PageLink { href: paged("matrix", page), number: page, current: false });
        }
    }

    for (page, chunk) in hosts.chunks(MATRIX_PAGE).enumerate().map(|(i, c)| (i + 1, c)) {
        let mut clusters: Vec<ClusterRows> = Vec::new();
        for h in chunk {
            let file = format!("hosts/{}.html", file_name(&h.name));
            let row = match h.result_set_id {
                Some(set) => {
                    let verdicts = data.sets.get(&set).map(Vec::as_slice).unwrap_or_default();
                    let cells = rules
                        .iter()
                        .map(|r| match verdicts.binary_search_by(|v| v.rule_id.as_str().cmp(&r.rule_id)) {
                            Ok(i) => status_cell(&verdicts[i].status, format!("{file}#r-{}", r.rule_id)),
                            Err(_) => Cell { class: "n", symbol: "–", status: "not judged", anchor: String::new() },
                        })
                        .collect();
                    Row { file, name: h.name.clone(), error: String::new(), cells, fail: data.host_counts(h)[1] }
                }
                None => Row { file, name: h.name.clone(), error: h.error_reason(), cells: Vec::new(), fail: 0 },
            };
            let cluster = cluster_of(h);
            match clusters.last_mut() {
                Some(c) if c.cluster == cluster => c.rows.push(row),
                _ => clusters.push(ClusterRows { cluster, rows: vec![row] }),
            }
        }
        let first = (page - 1) * MATRIX_PAGE + 1;
        let p = MatrixPage {
            root: "../",
            title: format!("Fleet matrix, scan {scan_id}"),
            scan_id,
            groups: &groups,
            columns: &columns,
            clusters,
            index: &index,
            pages: super::page_links("matrix", pages, page),
            first,
            last: first + chunk.len() - 1,
            total: hosts.len(),
        };
        w.page(&dir.join(paged("matrix", page)), &p)?;
    }
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cis_numbers_sort_numerically() {
        let mut v = vec!["1.2.10", "1.2.9", "4.1.1", "1.10.1", "x"];
        v.sort_by(|a, b| cis_order(a, b));
        assert_eq!(v, ["1.2.9", "1.2.10", "1.10.1", "4.1.1", "x"]);
    }
}
