//! The flag grammar of Kubernetes components, as their own parsers read a command line.
//!
//! Kubernetes binaries parse flags with spf13/pflag; etcd with Go's `flag` package. What both accept:
//! `--flag=value`, `--flag value`, a bare boolean `--flag` (meaning true), and a repeated flag whose last
//! occurrence wins. Go's `flag` also reads `-flag` as `--flag`. `--` ends the flags.
//!
//! One thing cannot be read from `ps` alone: whether `--flag next` means "flag = next" or "boolean flag, then a
//! positional argument". pflag decides by the flag's type, so the caller passes the component's boolean flags
//! (from the rule pack); for other flags a following token is taken as the value unless it starts with `-`.

use std::collections::HashSet;

/// How a component's binary parses its flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FlagStyle {
    /// spf13/pflag (every Kubernetes component): long flags need `--`; `-x` is a shorthand.
    Pflag,
    /// Go's standard `flag` package (etcd): `-name` and `--name` are the same flag.
    Go,
}

/// One flag occurrence on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag<'a> {
    /// The name without its dashes: `anonymous-auth`.
    pub name: &'a str,
    /// `None` for a bare `--flag`; `Some("")` for `--flag=`.
    pub value: Option<&'a str>,
    /// Index in the argument list of the token that named the flag.
    pub token: usize,
    /// Index of a separate value token (`--flag value`), if the value was one.
    pub value_token: Option<usize>,
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
    /// Splits `args` (the arguments after the program and any subcommand) into flags.
    pub fn parse(args: &[&'a str], style: FlagStyle, bool_flags: &HashSet<String>) -> Flags<'a> {
        let mut flags = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let token = args[i];
            let body = if let Some(b) = token.strip_prefix("--") {
                if b.is_empty() {
                    break; // `--`: everything after it is positional.
                }
                b
            } else if let Some(b) = token.strip_prefix('-').filter(|b| style == FlagStyle::Go && !b.is_empty()) {
                b
            } else {
                // A positional argument or a pflag shorthand (`-v=2`): no CIS check reads either.
                i += 1;
                continue;
            };
            let (name, value, value_token) = match body.split_once('=') {
                Some((name, value)) => (name, Some(value), None),
                None if bool_flags.contains(body) => (body, None, None),
                None => match args.get(i + 1) {
                    Some(next) if !next.starts_with('-') => {
                        i += 1;
                        (body, Some(*next), Some(i))
                    }
                    _ => (body, None, None),
                },
            };
            flags.push(Flag { name, value, token: i - usize::from(value_token.is_some()), value_token });
            i += 1;
        }
        Flags { flags }
    }

    /// The occurrence that counts: the last one.
    pub fn get(&self, name: &str) -> Option<&Flag<'a>> {
        self.flags.iter().rev().find(|f| f.name == name)
    }
}

/// The elements of a comma-separated flag value (`--enable-admission-plugins=A,B`), blanks dropped.
pub fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse<'a>(line: &'a str, style: FlagStyle, bools: &[&str]) -> Flags<'a> {
        let args: Vec<&str> = line.split_whitespace().collect();
        let bools = bools.iter().map(|s| s.to_string()).collect();
        Flags::parse(&args, style, &bools)
    }

    #[test]
    fn every_form() {
        let f = parse(
            "--a=1 --b 2 --profiling --c= --d=x=y --e=first --e=last --list=A,B,,C --tail",
            FlagStyle::Pflag,
            &["profiling"],
        );
        assert_eq!(f.get("a").unwrap().value, Some("1"));
        assert_eq!(f.get("b").unwrap().value, Some("2"));
        assert_eq!(f.get("b").unwrap().value_token, Some(2));
        assert_eq!(f.get("b").unwrap().token, 1);
        assert_eq!(f.get("profiling").unwrap().value, None);
        assert_eq!(f.get("profiling").unwrap().effective(), "true");
        assert!(f.get("c").unwrap().is_empty());
        assert_eq!(f.get("d").unwrap().value, Some("x=y"));
        assert_eq!(f.get("e").unwrap().value, Some("last"), "last occurrence wins");
        assert_eq!(list(f.get("list").unwrap().effective()).collect::<Vec<_>>(), ["A", "B", "C"]);
        assert_eq!(f.get("tail").unwrap().value, None, "a flag at the end is bare");
        assert!(f.get("missing").is_none());
    }

    #[test]
    fn a_boolean_flag_does_not_swallow_the_next_token() {
        let f = parse("--anonymous-auth positional --x y", FlagStyle::Pflag, &["anonymous-auth"]);
        assert_eq!(f.get("anonymous-auth").unwrap().effective(), "true");
        assert_eq!(f.get("x").unwrap().value, Some("y"));
        // Not declared boolean: the next token is its value, as pflag would read it.
        let f = parse("--anonymous-auth false", FlagStyle::Pflag, &[]);
        assert_eq!(f.get("anonymous-auth").unwrap().value, Some("false"));
    }

    #[test]
    fn a_flag_followed_by_a_flag_is_bare() {
        let f = parse("--profiling --port=0", FlagStyle::Pflag, &[]);
        assert_eq!(f.get("profiling").unwrap().value, None);
        assert_eq!(f.get("port").unwrap().value, Some("0"));
    }

    #[test]
    fn double_dash_ends_flags_and_shorthands_are_not_long_flags() {
        let f = parse("-v=2 --a=1 -- --b=2", FlagStyle::Pflag, &[]);
        assert!(f.get("v").is_none());
        assert!(f.get("b").is_none());
        assert_eq!(f.get("a").unwrap().value, Some("1"));
    }

    #[test]
    fn go_style_single_dash() {
        let f = parse("-client-cert-auth -data-dir /var/lib/etcd --name=n1", FlagStyle::Go, &["client-cert-auth"]);
        assert_eq!(f.get("client-cert-auth").unwrap().effective(), "true");
        assert_eq!(f.get("data-dir").unwrap().value, Some("/var/lib/etcd"));
        assert_eq!(f.get("name").unwrap().value, Some("n1"));
        let p = parse("-client-cert-auth", FlagStyle::Pflag, &["client-cert-auth"]);
        assert!(p.get("client-cert-auth").is_none(), "pflag reads -client-cert-auth as shorthands");
    }
}
