//! The flag grammar of Kubernetes components, as their own parsers read a command line.
//!
//! Kubernetes binaries parse flags with spf13/pflag; etcd with Go's `flag` package. What both accept:
//! `--flag=value`, `--flag value`, a bare boolean `--flag` (meaning true). Go's `flag` also reads `-flag` as
//! `--flag`. `--` ends the flags. Which occurrence of a repeated flag counts depends on the flag's type (a
//! scalar's last one; a list's every one), so this module only splits the command line into occurrences, in
//! order; `rules::value` applies the types.
//!
//! What `ps` alone cannot show is whether `--flag next` means "flag = next" or "boolean flag, then `next`".
//! Both parsers decide by the flag's type: a boolean never takes the next argument, every other flag always
//! does, even one starting with `-` (pflag `parseLongArg`, Go `flag.parseOne`). So the caller passes the
//! component's known flags ([`Known`], from the rule pack). For a flag it does not know, a following token
//! that does not start with `-` is taken as the value (the components refuse positional arguments, so that is
//! the only reading under which the process runs), and a following `--flag` is read as a flag but marked
//! [`Flag::ambiguous`]: pflag would have taken it as the unknown flag's value if that flag is not a boolean.

use std::borrow::Cow;
use std::collections::HashMap;

/// How a component's binary parses its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagStyle {
    /// spf13/pflag (every Kubernetes component): long flags need `--`; `-x` is a shorthand; positional
    /// arguments may come between flags. Names are normalised with `cliflag.WordSepNormalizeFunc`, which every
    /// component installs (component-base/cli/run.go; the kubelet's own `cleanFlagSet` in
    /// cmd/kubelet/app/server.go): `--anonymous_auth` is `--anonymous-auth`.
    Pflag,
    /// Go's standard `flag` package (etcd): `-name` and `--name` are the same flag; parsing stops at the first
    /// argument that is not a flag.
    Go,
}

/// Whether a flag takes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// A boolean: `--flag` alone means true; the next argument is never its value.
    Bool,
    /// Any other type: without `=value`, the next argument is its value, whatever it looks like.
    Value,
}

/// The flags a component is known to have, by name without dashes (pflag shorthands as their one letter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Known {
    names: HashMap<String, Arity>,
}

impl Known {
    pub fn insert(&mut self, name: &str, arity: Arity) -> Option<Arity> {
        self.names.insert(name.to_owned(), arity)
    }

    pub fn get(&self, name: &str) -> Option<Arity> {
        self.names.get(name).copied()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// Known flags from `(name, arity)` pairs; for tests and callers without a pack.
    pub fn of<'n>(pairs: impl IntoIterator<Item = (&'n str, Arity)>) -> Known {
        let mut known = Known::default();
        for (name, arity) in pairs {
            known.insert(name, arity);
        }
        known
    }
}

/// One flag occurrence on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag<'a> {
    /// The name without its dashes, normalised as the component's parser does: `anonymous-auth`.
    pub name: Cow<'a, str>,
    /// `None` for a bare `--flag`; `Some("")` for `--flag=`.
    pub value: Option<&'a str>,
    /// Index in the argument list of the token that named the flag.
    pub token: usize,
    /// Index of a separate value token (`--flag value`), if the value was one.
    pub value_token: Option<usize>,
    /// This token follows a flag the pack does not know that took no `=value`: if that flag is not a boolean,
    /// the component read this token as its value, not as a flag.
    pub ambiguous: bool,
}

impl<'a> Flag<'a> {
    /// The effective value: a bare flag is a boolean set to true.
    pub fn effective(&self) -> &'a str {
        self.value.unwrap_or("true")
    }

    /// Kubernetes treats `--flag=` as the empty string, which for every CIS check means "not configured".
    pub fn is_empty(&self) -> bool {
        self.value == Some("")
    }
}

/// The flags of one command line, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags<'a> {
    pub flags: Vec<Flag<'a>>,
}

impl<'a> Flags<'a> {
    /// Splits `args` (the arguments after the program and any subcommand) into flags, reading names and values
    /// as `style`'s parser does with the flags in `known`.
    pub fn parse(args: &[&'a str], style: FlagStyle, known: &Known) -> Flags<'a> {
        let mut flags = Vec::new();
        let mut i = 0;
        // Set after a flag the pack does not know took no `=value` and was followed by a dash token.
        let mut ambiguous = false;
        while i < args.len() {
            let token = args[i];
            let was_ambiguous = std::mem::take(&mut ambiguous);
            let body = match (style, token.strip_prefix("--"), token.strip_prefix('-')) {
                (_, Some(""), _) => break, // `--`: everything after it is positional.
                (_, Some(b), _) => b,
                (FlagStyle::Go, None, Some(b)) if !b.is_empty() => b,
                (FlagStyle::Pflag, None, Some(b)) if !b.is_empty() => {
                    // A shorthand (`-v=2`, `-v 2`): no CIS check reads one, but a value-taking shorthand given
                    // without `=` consumes the next argument, which then is no flag.
                    let letter = &b[..b.chars().next().map_or(0, char::len_utf8)];
                    let takes_next = b.len() == letter.len() && known.get(letter) == Some(Arity::Value);
                    i += 1 + usize::from(takes_next);
                    continue;
                }
                (FlagStyle::Pflag, None, _) => {
                    // A positional argument; pflag reads flags on both sides of it.
                    i += 1;
                    continue;
                }
                // Go's `flag` stops at the first argument that is not a flag ("-" included).
                (FlagStyle::Go, None, _) => break,
            };
            // `---x` and `--=x` are "bad flag syntax" to both parsers: the process would not have started.
            if body.starts_with(['-', '=']) {
                i += 1;
                continue;
            }
            let (raw_name, value) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value)),
                None => (body, None),
            };
            let name = normalise(raw_name, style);
            let (value, value_token) = match (value, known.get(&name), args.get(i + 1)) {
                (Some(v), _, _) => (Some(v), None),
                (None, Some(Arity::Bool), _) | (None, _, None) => (None, None),
                (None, Some(Arity::Value), Some(next)) => (Some(*next), Some(i + 1)),
                (None, None, Some(next)) if !next.starts_with('-') => (Some(*next), Some(i + 1)),
                (None, None, Some(_)) => {
                    ambiguous = true;
                    (None, None)
                }
            };
            flags.push(Flag { name, value, token: i, value_token, ambiguous: was_ambiguous });
            i += 1 + usize::from(value_token.is_some());
        }
        Flags { flags }
    }

    /// The last occurrence: the one a scalar flag takes.
    pub fn get(&self, name: &str) -> Option<&Flag<'a>> {
        self.flags.iter().rev().find(|f| f.name == name)
    }

    /// Every occurrence, in order: what a list flag appends and a map flag merges.
    pub fn all<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Flag<'a>> + 's {
        self.flags.iter().filter(move |f| f.name == name)
    }

    /// The command-line text of an occurrence: `--flag=value`, or `--flag value` for a separate value.
    pub fn text(&self, args: &[&str], flag: &Flag<'_>) -> String {
        match flag.value_token {
            Some(v) => format!("{} {}", args[flag.token], args[v]),
            None => args[flag.token].to_owned(),
        }
    }
}

/// pflag's names after the component's normalisation; Go's `flag` takes names as written.
fn normalise(name: &str, style: FlagStyle) -> Cow<'_, str> {
    match style {
        FlagStyle::Pflag if name.contains('_') => Cow::Owned(name.replace('_', "-")),
        _ => Cow::Borrowed(name),
    }
}

/// The elements of a comma-separated flag value (`--enable-admission-plugins=A,B`), blanks dropped.
pub fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(line: &'a str, style: FlagStyle, bools: &[&str], values: &[&str]) -> Flags<'a> {
        let args: Vec<&str> = line.split_whitespace().collect();
        let known = Known::of(bools.iter().map(|b| (*b, Arity::Bool)).chain(values.iter().map(|v| (*v, Arity::Value))));
        Flags::parse(&args, style, &known)
    }

    #[test]
    fn every_form() {
        let f = parse(
            "--a=1 --b 2 --profiling --c= --d=x=y --e=first --e=last --list=A,B,,C --tail",
            FlagStyle::Pflag,
            &["profiling"],
            &[],
        );
        assert_eq!(f.get("a").unwrap().value, Some("1"));
        assert_eq!(f.get("b").unwrap().value, Some("2"));
        assert_eq!(f.get("b").unwrap().value_token, Some(2));
        assert_eq!(f.get("b").unwrap().token, 1);
        assert_eq!(f.get("profiling").unwrap().value, None);
        assert_eq!(f.get("profiling").unwrap().effective(), "true");
        assert!(f.get("c").unwrap().is_empty());
        assert_eq!(f.get("d").unwrap().value, Some("x=y"));
        assert_eq!(f.get("e").unwrap().value, Some("last"), "get is the last occurrence");
        assert_eq!(f.all("e").map(|e| e.effective()).collect::<Vec<_>>(), ["first", "last"]);
        assert_eq!(list(f.get("list").unwrap().effective()).collect::<Vec<_>>(), ["A", "B", "C"]);
        assert_eq!(f.get("tail").unwrap().value, None, "a flag at the end is bare");
        assert!(f.get("missing").is_none());
        assert!(f.flags.iter().all(|f| !f.ambiguous));
    }

    #[test]
    fn a_boolean_flag_does_not_swallow_the_next_token() {
        let f = parse("--anonymous-auth positional --x y", FlagStyle::Pflag, &["anonymous-auth"], &[]);
        assert_eq!(f.get("anonymous-auth").unwrap().effective(), "true");
        assert_eq!(f.get("x").unwrap().value, Some("y"));
        // `--anonymous-auth false` is pflag's "true, then a positional false": the boolean is true.
        let f = parse("--anonymous-auth false", FlagStyle::Pflag, &["anonymous-auth"], &[]);
        assert_eq!(f.get("anonymous-auth").unwrap().effective(), "true");
    }

    #[test]
    fn a_value_flag_takes_the_next_token_whatever_it_looks_like() {
        // pflag: `--audit-log-path --profiling=false` sets audit-log-path to "--profiling=false".
        let f = parse("--audit-log-path --profiling=false", FlagStyle::Pflag, &["profiling"], &["audit-log-path"]);
        assert_eq!(f.get("audit-log-path").unwrap().value, Some("--profiling=false"));
        assert!(f.get("profiling").is_none(), "the value token is not a flag");
    }

    #[test]
    fn a_dash_token_after_an_unknown_bare_flag_is_ambiguous() {
        let f = parse("--mystery --profiling=false --x=1", FlagStyle::Pflag, &["profiling"], &[]);
        assert_eq!(f.get("mystery").unwrap().value, None);
        assert!(f.get("profiling").unwrap().ambiguous, "pflag may have read it as --mystery's value");
        assert!(!f.get("x").unwrap().ambiguous);
        // Known booleans and `=value` forms leave no doubt.
        let f = parse(
            "--profiling --anonymous-auth=false --y=1 --anonymous-auth=true",
            FlagStyle::Pflag,
            &["profiling"],
            &[],
        );
        assert!(f.flags.iter().all(|f| !f.ambiguous));
    }

    #[test]
    fn underscores_are_dashes_to_pflag_not_to_go() {
        let f = parse("--anonymous-auth=false --anonymous_auth=true", FlagStyle::Pflag, &[], &[]);
        assert_eq!(f.get("anonymous-auth").unwrap().value, Some("true"), "the later, underscored one wins");
        assert_eq!(f.all("anonymous-auth").count(), 2);
        let f = parse("-client_cert_auth=true", FlagStyle::Go, &[], &[]);
        assert!(f.get("client-cert-auth").is_none());
        assert!(f.get("client_cert_auth").is_some());
    }

    #[test]
    fn a_flag_followed_by_a_flag_is_bare() {
        let f = parse("--profiling --port=0", FlagStyle::Pflag, &[], &[]);
        assert_eq!(f.get("profiling").unwrap().value, None);
        assert_eq!(f.get("port").unwrap().value, Some("0"));
    }

    #[test]
    fn double_dash_ends_flags_and_shorthands_are_not_long_flags() {
        let f = parse("-v=2 --a=1 -- --b=2", FlagStyle::Pflag, &[], &[]);
        assert!(f.get("v").is_none());
        assert!(f.get("b").is_none());
        assert_eq!(f.get("a").unwrap().value, Some("1"));
        // `-v 2`: klog's -v takes a value, so "2" is not positional and the next flag is read normally.
        let f = parse("-v 2 --a=1", FlagStyle::Pflag, &[], &["v"]);
        assert_eq!(f.get("a").unwrap().value, Some("1"));
        // `-v --x=1` with -v value-taking: pflag reads "--x=1" as -v's value.
        let f = parse("-v --x=1", FlagStyle::Pflag, &[], &["v"]);
        assert!(f.get("x").is_none());
    }

    #[test]
    fn bad_syntax_is_skipped() {
        let f = parse("---profiling=true --=x --a=1", FlagStyle::Pflag, &[], &[]);
        assert_eq!(f.flags.len(), 1);
        assert_eq!(f.get("a").unwrap().value, Some("1"));
    }

    #[test]
    fn go_style_single_dash_and_stop_at_positional() {
        let f = parse(
            "-client-cert-auth -data-dir /var/lib/etcd --name=n1",
            FlagStyle::Go,
            &["client-cert-auth"],
            &["data-dir"],
        );
        assert_eq!(f.get("client-cert-auth").unwrap().effective(), "true");
        assert_eq!(f.get("data-dir").unwrap().value, Some("/var/lib/etcd"));
        assert_eq!(f.get("name").unwrap().value, Some("n1"));
        let p = parse("-client-cert-auth", FlagStyle::Pflag, &["client-cert-auth"], &[]);
        assert!(p.get("client-cert-auth").is_none(), "pflag reads -client-cert-auth as shorthands");
        // Go's flag stops at the first non-flag: `-client-cert-auth false` leaves "false" and all after it.
        let f = parse("-client-cert-auth false --auto-tls=true", FlagStyle::Go, &["client-cert-auth"], &[]);
        assert_eq!(f.get("client-cert-auth").unwrap().effective(), "true");
        assert!(f.get("auto-tls").is_none());
        // A Go value flag takes the next argument even when it starts with a dash.
        let f = parse("-name -auto-tls", FlagStyle::Go, &[], &["name"]);
        assert_eq!(f.get("name").unwrap().value, Some("-auto-tls"));
    }

    #[test]
    fn text_shows_the_occurrence_as_written() {
        let line = "--a=1 --b 2";
        let args: Vec<&str> = line.split_whitespace().collect();
        let f = Flags::parse(&args, FlagStyle::Pflag, &Known::default());
        assert_eq!(f.text(&args, f.get("a").unwrap()), "--a=1");
        assert_eq!(f.text(&args, f.get("b").unwrap()), "--b 2");
    }
}
