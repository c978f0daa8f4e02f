//! The format of a rule's texts (rationale, audit, remediation) and its parser: plain text with a little
//! structure, read the way the CIS benchmark prints it, never HTML.
//!
//! Owns: turning a text into [`Block`]s: paragraphs (blank lines between them; each line break kept), numbered
//! steps (`1. `, `2) `), bullets (`- `, `* `), code (lines indented by two or more spaces that are not steps
//! or bullets: command lines and flags), and `backtick` spans as inline code. Nothing else is markup: `<`, `*`
//! and `_` are text (remediations are full of `<path/to/file>` and `*_CBC_SHA`), so a pack cannot inject HTML
//! and no text needs escaping to be written. Must not touch: HTML or terminals; the report's templates and
//! `rules show` render the blocks, each escaping as its medium needs.
//!
//! Why not Markdown: the pack's texts follow the benchmark's layout (a command indented by two spaces right
//! after the sentence that introduces it, no blank line), which CommonMark reads as one run-on paragraph, and
//! Markdown would turn `<path>` into raw HTML to be filtered and `*_CBC_SHA` into emphasis.

/// A run of text inside a line: literal text, or a `code` span (backticks removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    pub text: String,
    pub code: bool,
}

/// One block of a text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Block {
    /// Lines of running text, each line break kept.
    Para(Vec<Vec<Span>>),
    /// Numbered steps (`ordered`) or bullets; each item its spans (continuation lines joined with a space).
    List { ordered: bool, items: Vec<Vec<Span>> },
    /// Lines to copy as they are (their common indentation removed).
    Code(String),
}

/// Parses `text` into blocks.
pub fn parse(text: &str) -> Vec<Block> {
    let mut blocks: Vec<Block> = Vec::new();
    let mut code: Vec<&str> = Vec::new();
    let flush_code = |code: &mut Vec<&str>, blocks: &mut Vec<Block>| {
        if code.is_empty() {
            return;
        }
        let indent = code.iter().map(|l| l.len() - l.trim_start().len()).min().unwrap_or(0);
        let body = code.iter().map(|l| l[indent..].trim_end()).collect::<Vec<_>>().join("\n");
        blocks.push(Block::Code(body));
        code.clear();
    };
    // Whether the last block may take the next line (false after a blank line or a code block).
    let mut open = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if trimmed.is_empty() {
            flush_code(&mut code, &mut blocks);
            open = false;
            continue;
        }
        if let Some((ordered, rest)) = item(trimmed) {
            flush_code(&mut code, &mut blocks);
            match blocks.last_mut() {
                Some(Block::List { ordered: o, items }) if open && *o == ordered => items.push(spans(rest)),
                _ => blocks.push(Block::List { ordered, items: vec![spans(rest)] }),
            }
            open = true;
            continue;
        }
        if indent >= 2 {
            // An indented line under a list item continues the item; otherwise it is code.
            if let (true, Some(Block::List { items, .. })) = (open && code.is_empty(), blocks.last_mut())
                && indent >= 3
            {
                let last = items.last_mut().expect("a list has an item");
                last.push(Span { text: " ".into(), code: false });
                last.extend(spans(trimmed));
                continue;
            }
            code.push(line);
            continue;
        }
        flush_code(&mut code, &mut blocks);
        match blocks.last_mut() {
            Some(Block::Para(lines)) if open => lines.push(spans(line.trim_end())),
            _ => blocks.push(Block::Para(vec![spans(line.trim_end())])),
        }
        open = true;
    }
    flush_code(&mut code, &mut blocks);
    blocks
}

/// A list item's kind and text: `1. `, `12) ` (ordered) or `- `, `* ` (bullets).
fn item(line: &str) -> Option<(bool, &str)> {
    if let Some(rest) = line.strip_prefix("- ").or_else(|| line.strip_prefix("* ")) {
        return Some((false, rest.trim_start()));
    }
    let digits = line.bytes().take_while(u8::is_ascii_digit).count();
    if (1..=3).contains(&digits) {
        let rest = &line[digits..];
        if let Some(rest) = rest.strip_prefix(". ").or_else(|| rest.strip_prefix(") ")) {
            return Some((true, rest.trim_start()));
        }
    }
    None
}

/// A line's spans: text outside backticks, and the code inside them. An unpaired backtick is text.
pub fn spans(line: &str) -> Vec<Span> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(open) = rest.find('`') {
        let Some(len) = rest[open + 1..].find('`') else { break };
        if open > 0 {
            out.push(Span { text: rest[..open].to_string(), code: false });
        }
        if len > 0 {
            out.push(Span { text: rest[open + 1..open + 1 + len].to_string(), code: true });
        }
        rest = &rest[open + 2 + len..];
    }
    if !rest.is_empty() {
        out.push(Span { text: rest.to_string(), code: false });
    }
    out
}

/// The blocks as plain text for a terminal, each line prefixed by `indent`: paragraphs as written (code spans
/// in their backticks), steps numbered, bullets as `-`, code indented four more spaces, a blank line between
/// blocks.
pub fn to_text(blocks: &[Block], indent: &str) -> String {
    let line = |spans: &[Span]| {
        spans.iter().map(|s| if s.code { format!("`{}`", s.text) } else { s.text.clone() }).collect::<String>()
    };
    let mut parts = Vec::new();
    for b in blocks {
        let text = match b {
            Block::Para(lines) => lines.iter().map(|l| format!("{indent}{}", line(l))).collect::<Vec<_>>().join("\n"),
            Block::List { ordered, items } => items
                .iter()
                .enumerate()
                .map(|(i, it)| match ordered {
                    true => format!("{indent}{}. {}", i + 1, line(it)),
                    false => format!("{indent}- {}", line(it)),
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Block::Code(body) => body.lines().map(|l| format!("{indent}    {l}")).collect::<Vec<_>>().join("\n"),
        };
        parts.push(text);
    }
    parts.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Span {
        Span { text: s.into(), code: false }
    }
    fn code(s: &str) -> Span {
        Span { text: s.into(), code: true }
    }

    #[test]
    fn a_flag_under_its_sentence_is_code_and_the_text_after_it_a_new_paragraph() {
        let t = "Edit the file and set the below parameter.\n  --anonymous-auth=false\nThen restart.";
        assert_eq!(
            parse(t),
            vec![
                Block::Para(vec![vec![text("Edit the file and set the below parameter.")]]),
                Block::Code("--anonymous-auth=false".into()),
                Block::Para(vec![vec![text("Then restart.")]]),
            ]
        );
    }

    #[test]
    fn consecutive_indented_lines_are_one_code_block_with_relative_indentation() {
        let t = "Run:\n  systemctl daemon-reload\n    --x\n  systemctl restart kubelet";
        assert_eq!(parse(t)[1], Block::Code("systemctl daemon-reload\n  --x\nsystemctl restart kubelet".into()));
    }

    #[test]
    fn numbered_steps_indented_or_not_are_an_ordered_list_and_backticks_code() {
        let t = "First:\n  1. set `serverTLSBootstrap: true`\n  2. approve the CSRs\nThen the flag.";
        assert_eq!(
            parse(t),
            vec![
                Block::Para(vec![vec![text("First:")]]),
                Block::List {
                    ordered: true,
                    items: vec![vec![text("set "), code("serverTLSBootstrap: true")], vec![text("approve the CSRs")]]
                },
                Block::Para(vec![vec![text("Then the flag.")]]),
            ]
        );
        assert!(matches!(&parse("- a\n- b")[0], Block::List { ordered: false, items } if items.len() == 2));
    }

    #[test]
    fn nothing_but_backticks_is_markup() {
        let t = "Set --tls-cipher-suites=<list>; CIS dropped *_CBC_SHA. <script>x</script> `a` b ` c";
        let blocks = parse(t);
        let Block::Para(lines) = &blocks[0] else { panic!("{blocks:?}") };
        assert_eq!(
            lines[0],
            vec![
                text("Set --tls-cipher-suites=<list>; CIS dropped *_CBC_SHA. <script>x</script> "),
                code("a"),
                text(" b ` c")
            ]
        );
    }

    #[test]
    fn paragraphs_split_at_blank_lines_and_keep_their_line_breaks() {
        let blocks = parse("one\ntwo\n\nImpact: three");
        assert_eq!(blocks.len(), 2);
        assert!(matches!(&blocks[0], Block::Para(l) if l.len() == 2));
        assert_eq!(to_text(&blocks, "  "), "  one\n  two\n\n  Impact: three");
    }

    #[test]
    fn every_text_of_the_pack_parses_into_blocks_that_keep_its_words() {
        let set = crate::rules::RuleSet::embedded().unwrap();
        for r in &set.rules {
            for t in [&r.rationale, &r.audit, &r.remediation] {
                let words = |s: &str| s.split_whitespace().map(|w| w.replace('`', "")).collect::<Vec<_>>();
                let blocks = parse(t);
                assert_eq!(words(&to_text(&blocks, "")), words(t), "{}", r.id);
            }
        }
    }
}
