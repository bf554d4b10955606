//! The chat list's search syntax, `GET /api/v1/chats?q=...` (ARCHITECTURE.md §11): a query
//! is space-separated `key:value` terms, all of which a chat must match:
//!
//! ```text
//! title:"fix the bug" status:error,requires_action repo:acme/api label:team=infra
//! ```
//!
//! | key | value | matches a root chat |
//! | --- | --- | --- |
//! | `title` | text | whose title holds the text, case-insensitively |
//! | `archived` | `true`, `false`, `any` | archived, not archived (the default when no term says), either |
//! | `status` | statuses, comma-separated | in one of them |
//! | `pr` | a number | whose diff status reports that pull request number |
//! | `repo` | text | whose diff status's git remote origin or PR URL holds the text, case-insensitively |
//! | `pr_title` | text | whose diff status's PR title holds the text, case-insensitively |
//! | `pr_status` | `draft`, `open`, `merged`, `closed`, `none` | whose PR is in that state; `none`: no PR reported |
//! | `client_type` | `ui`, `api` | created by that kind of client |
//! | `label` | `key=value` | labelled `key` with exactly `value` |
//!
//! A value holding whitespace or `"` is quoted: `"..."`, in which `\"` is a quote and `\\` a
//! backslash (any other backslash is an error, so that every query prints back the way it
//! reads). A value may hold `:` unquoted (`repo:https://github.com/acme/api`). Keys and the
//! named values are lowercase. Values never hold control characters (nothing searchable
//! does).
//!
//! [`ChatQuery::parse`] gives the typed query the store filters with
//! (`Store::list_root_chats`), or a [`QueryError`] naming the term and where it starts:
//! a bare word, an unknown key, an empty or bad value, an unterminated quote. A parsed query
//! prints back ([`std::fmt::Display`]) to a query that parses to the same [`ChatQuery`].
//!
//! ```
//! use agentq_core::chat_query::{ChatQuery, Term};
//! let query = ChatQuery::parse(r#"title:"fix the bug"  pr:0042"#).unwrap();
//! assert_eq!(query.terms()[1], Term::Pr(42));
//! assert_eq!(query.to_string(), r#"title:"fix the bug" pr:42"#);
//! let error = ChatQuery::parse("status:done").unwrap_err();
//! assert!(error.to_string().starts_with("term `status:done` at character 1:"));
//! ```

use std::fmt;

use crate::domain::{ChatStatus, ClientType};

/// Longest query, in characters.
pub const MAX_QUERY_CHARS: usize = 1024;
/// Most terms in one query: each is a condition of the list's statement.
pub const MAX_TERMS: usize = 32;

/// The keys of the syntax, in the order error messages list them.
pub const KEYS: [&str; 9] = [
    "title",
    "archived",
    "status",
    "pr",
    "repo",
    "pr_title",
    "pr_status",
    "client_type",
    "label",
];

/// A parsed query: terms a chat must all match, in the order they were written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChatQuery {
    terms: Vec<Term>,
}

/// One `key:value` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    /// `title:<text>`: the title holds the text (case-insensitive).
    Title(String),
    /// `archived:true|false|any`.
    Archived(Archived),
    /// `status:<s>[,<s>...]`: the chat's status is one of these.
    Status(Vec<ChatStatus>),
    /// `pr:<number>`: the diff status reports this pull request.
    Pr(i32),
    /// `repo:<text>`: the diff status's git remote origin or PR URL holds the text.
    Repo(String),
    /// `pr_title:<text>`: the diff status's PR title holds the text.
    PrTitle(String),
    /// `pr_status:draft|open|merged|closed|none`.
    PrStatus(PrStatus),
    /// `client_type:ui|api`.
    ClientType(ClientType),
    /// `label:<key>=<value>`: the chat has this label with exactly this value.
    Label {
        /// The label's key (never holds `=`).
        key: String,
        /// Its value (may be empty).
        value: String,
    },
}

/// What an `archived:` term asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Archived {
    /// Archived chats only.
    True,
    /// Chats that are not archived (also the default when no term names `archived`).
    False,
    /// Both.
    Any,
}

/// What a `pr_status:` term asks for, from the diff status's PR state and draft flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrStatus {
    /// An open draft PR.
    Draft,
    /// An open PR that is not a draft.
    Open,
    /// A merged PR.
    Merged,
    /// A PR closed without merging.
    Closed,
    /// No PR reported (no diff status, or one without a PR number or URL).
    None,
}

/// Which chats the `archived` terms of a query allow, together (terms AND).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveScope {
    /// Only archived (`true`) or only not archived (`false`) chats.
    Only(bool),
    /// Both.
    Both,
    /// None at all (`archived:true archived:false`).
    Neither,
}

/// Why a query was refused; the API answers a 400 naming `q` with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// The query is longer than [`MAX_QUERY_CHARS`].
    #[error("is {chars} characters long; a query may be at most {MAX_QUERY_CHARS}")]
    TooLong {
        /// Its length in characters.
        chars: usize,
    },
    /// One term is wrong.
    #[error("term `{term}` at character {position}: {problem}")]
    Term {
        /// The term as written (to the end of the query for an unterminated quote).
        term: String,
        /// Where it starts: a 1-based character position in the query.
        position: usize,
        /// What is wrong, and what would be right.
        problem: String,
    },
}

impl ChatQuery {
    /// Parses `q` (see the module page). Empty or all whitespace: no terms.
    pub fn parse(q: &str) -> Result<Self, QueryError> {
        let chars: Vec<char> = q.chars().collect();
        if chars.len() > MAX_QUERY_CHARS {
            return Err(QueryError::TooLong { chars: chars.len() });
        }
        let mut terms = Vec::new();
        let mut i = 0;
        loop {
            while i < chars.len() && chars[i].is_whitespace() {
                i += 1;
            }
            if i == chars.len() {
                break;
            }
            let start = i;
            let fail = |end: usize, problem: String| QueryError::Term {
                term: chars[start..end].iter().collect(),
                position: start + 1,
                problem,
            };
            let word_end = |from: usize| {
                (from..chars.len())
                    .find(|&j| chars[j].is_whitespace())
                    .unwrap_or(chars.len())
            };
            while i < chars.len() && chars[i] != ':' && chars[i] != '"' && !chars[i].is_whitespace()
            {
                i += 1;
            }
            if i == chars.len() || chars[i] != ':' {
                return Err(fail(
                    word_end(i),
                    format!(
                        "not a `key:value` term (keys: {}); quote a value that holds spaces: `title:\"fix the bug\"`",
                        KEYS.join(", ")
                    ),
                ));
            }
            let key: String = chars[start..i].iter().collect();
            i += 1;
            let value = if chars.get(i) == Some(&'"') {
                let opened = i + 1;
                i += 1;
                let mut value = String::new();
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(fail(
                                i,
                                format!("the quote at character {opened} is never closed"),
                            ));
                        }
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') => match chars.get(i + 1) {
                            Some(&c @ ('"' | '\\')) => {
                                value.push(c);
                                i += 2;
                            }
                            _ => {
                                return Err(fail(
                                    word_end(i),
                                    format!(
                                        "the backslash at character {} escapes nothing: inside quotes write `\\\"` for a quote and `\\\\` for a backslash",
                                        i + 1
                                    ),
                                ));
                            }
                        },
                        Some(&c) => {
                            value.push(c);
                            i += 1;
                        }
                    }
                }
                if i < chars.len() && !chars[i].is_whitespace() {
                    return Err(fail(
                        word_end(i),
                        "the closing quote must end the term: put a space after it".into(),
                    ));
                }
                value
            } else {
                let from = i;
                while i < chars.len() && !chars[i].is_whitespace() {
                    if chars[i] == '"' {
                        return Err(fail(
                            word_end(i),
                            format!(
                                "a quote may only open a value (`{key}:\"...\"`), not stand inside one"
                            ),
                        ));
                    }
                    i += 1;
                }
                chars[from..i].iter().collect()
            };
            if terms.len() == MAX_TERMS {
                return Err(fail(
                    i,
                    format!("a query may have at most {MAX_TERMS} terms"),
                ));
            }
            terms.push(Term::new(&key, value).map_err(|problem| fail(i, problem))?);
        }
        Ok(ChatQuery { terms })
    }

    /// The terms, in the order they were written.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// Which chats the query's `archived` terms allow: not archived ones when no term says.
    pub fn archive_scope(&self) -> ArchiveScope {
        // (not archived allowed, archived allowed)
        let mut allowed = (true, true);
        let mut said = false;
        for term in &self.terms {
            if let Term::Archived(archived) = term {
                said = true;
                match archived {
                    Archived::True => allowed.0 = false,
                    Archived::False => allowed.1 = false,
                    Archived::Any => {}
                }
            }
        }
        if !said {
            return ArchiveScope::Only(false);
        }
        match allowed {
            (true, true) => ArchiveScope::Both,
            (true, false) => ArchiveScope::Only(false),
            (false, true) => ArchiveScope::Only(true),
            (false, false) => ArchiveScope::Neither,
        }
    }
}

impl std::str::FromStr for ChatQuery {
    type Err = QueryError;

    fn from_str(q: &str) -> Result<Self, QueryError> {
        ChatQuery::parse(q)
    }
}

impl Term {
    /// The term `key:value`, or what is wrong with it.
    fn new(key: &str, value: String) -> Result<Term, String> {
        if !KEYS.contains(&key) {
            let shown = if key.is_empty() {
                "a term must start with its key".to_owned()
            } else {
                format!("`{key}` is not a search key")
            };
            return Err(format!("{shown}; keys: {}", KEYS.join(", ")));
        }
        if value.is_empty() {
            return Err(format!("`{key}` needs a value"));
        }
        if let Some(c) = crate::text::forbidden_char(&value) {
            return Err(format!(
                "the value holds {} (a control character); nothing searchable does",
                crate::text::describe_char(c)
            ));
        }
        let one_of = |allowed: &[&str]| {
            format!(
                "`{key}` is one of {}, not `{value}`",
                allowed
                    .iter()
                    .map(|a| format!("`{a}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Ok(match key {
            "title" => Term::Title(value),
            "archived" => Term::Archived(match value.as_str() {
                "true" => Archived::True,
                "false" => Archived::False,
                "any" => Archived::Any,
                _ => return Err(one_of(&["true", "false", "any"])),
            }),
            "status" => {
                let mut statuses = Vec::new();
                for name in value.split(',') {
                    statuses.push(chat_status(name).ok_or_else(|| {
                        let names = STATUSES.map(ChatStatus::as_str).join(", ");
                        if name.is_empty() {
                            format!("`status` takes statuses separated by single commas ({names})")
                        } else {
                            format!("`{name}` is not a chat status ({names})")
                        }
                    })?);
                }
                Term::Status(statuses)
            }
            "pr" => match value.parse::<i32>() {
                Ok(n) if n > 0 && value.bytes().all(|b| b.is_ascii_digit()) => Term::Pr(n),
                _ => {
                    return Err(format!(
                        "`pr` takes a pull request number (like `pr:123`), not `{value}`"
                    ));
                }
            },
            "repo" => Term::Repo(value),
            "pr_title" => Term::PrTitle(value),
            "pr_status" => Term::PrStatus(match value.as_str() {
                "draft" => PrStatus::Draft,
                "open" => PrStatus::Open,
                "merged" => PrStatus::Merged,
                "closed" => PrStatus::Closed,
                "none" => PrStatus::None,
                _ => return Err(one_of(&["draft", "open", "merged", "closed", "none"])),
            }),
            "client_type" => Term::ClientType(match value.as_str() {
                "ui" => ClientType::Ui,
                "api" => ClientType::Api,
                _ => return Err(one_of(&["ui", "api"])),
            }),
            "label" => match value.split_once('=') {
                Some((key, label)) if !key.is_empty() => Term::Label {
                    key: key.to_owned(),
                    value: label.to_owned(),
                },
                _ => {
                    return Err(format!(
                        "`label` takes `key=value` (like `label:team=infra`), not `{value}`"
                    ));
                }
            },
            _ => unreachable!("every key in KEYS has an arm"),
        })
    }

    /// The term's key.
    pub fn key(&self) -> &'static str {
        match self {
            Term::Title(_) => "title",
            Term::Archived(_) => "archived",
            Term::Status(_) => "status",
            Term::Pr(_) => "pr",
            Term::Repo(_) => "repo",
            Term::PrTitle(_) => "pr_title",
            Term::PrStatus(_) => "pr_status",
            Term::ClientType(_) => "client_type",
            Term::Label { .. } => "label",
        }
    }
}

/// Every chat status, in the order error messages list them.
const STATUSES: [ChatStatus; 5] = [
    ChatStatus::Waiting,
    ChatStatus::Pending,
    ChatStatus::Running,
    ChatStatus::RequiresAction,
    ChatStatus::Error,
];

fn chat_status(name: &str) -> Option<ChatStatus> {
    STATUSES.into_iter().find(|s| s.as_str() == name)
}

impl PrStatus {
    /// The value as written in a query.
    pub fn as_str(self) -> &'static str {
        match self {
            PrStatus::Draft => "draft",
            PrStatus::Open => "open",
            PrStatus::Merged => "merged",
            PrStatus::Closed => "closed",
            PrStatus::None => "none",
        }
    }
}

impl fmt::Display for ChatQuery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, term) in self.terms.iter().enumerate() {
            if n > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{term}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.key())?;
        match self {
            Term::Title(text) | Term::Repo(text) | Term::PrTitle(text) => write_value(f, text),
            Term::Archived(archived) => f.write_str(match archived {
                Archived::True => "true",
                Archived::False => "false",
                Archived::Any => "any",
            }),
            Term::Status(statuses) => {
                let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
                f.write_str(&names.join(","))
            }
            Term::Pr(number) => write!(f, "{number}"),
            Term::PrStatus(status) => f.write_str(status.as_str()),
            Term::ClientType(ClientType::Ui) => f.write_str("ui"),
            Term::ClientType(ClientType::Api) => f.write_str("api"),
            Term::Label { key, value } => write_value(f, &format!("{key}={value}")),
        }
    }
}

/// A value bare when it can be (not empty, no whitespace, no quote), else quoted with `"`
/// and `\` escaped: the two spellings [`ChatQuery::parse`] reads back to the same text.
fn write_value(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    if !value.is_empty() && !value.chars().any(|c| c.is_whitespace() || c == '"') {
        return f.write_str(value);
    }
    f.write_str("\"")?;
    for c in value.chars() {
        if c == '"' || c == '\\' {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    f.write_str("\"")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parsed(q: &str) -> Vec<Term> {
        ChatQuery::parse(q)
            .unwrap_or_else(|e| panic!("{q}: {e}"))
            .terms
    }

    /// The term and position an error names.
    fn refused(q: &str) -> (String, usize) {
        match ChatQuery::parse(q) {
            Err(QueryError::Term { term, position, .. }) => (term, position),
            other => panic!("{q}: expected a term error, got {other:?}"),
        }
    }

    #[test]
    fn every_key_reads_its_value() {
        assert_eq!(
            parsed(
                r#"title:"fix the bug" archived:any status:error,running pr:42 repo:acme/api pr_title:Login pr_status:draft client_type:ui label:team=infra"#
            ),
            vec![
                Term::Title("fix the bug".into()),
                Term::Archived(Archived::Any),
                Term::Status(vec![ChatStatus::Error, ChatStatus::Running]),
                Term::Pr(42),
                Term::Repo("acme/api".into()),
                Term::PrTitle("Login".into()),
                Term::PrStatus(PrStatus::Draft),
                Term::ClientType(ClientType::Ui),
                Term::Label {
                    key: "team".into(),
                    value: "infra".into()
                },
            ]
        );
        assert_eq!(parsed(""), vec![]);
        assert_eq!(parsed(" \t\n "), vec![]);
        assert_eq!(
            parsed("repo:https://github.com/acme/api"),
            vec![Term::Repo("https://github.com/acme/api".into())]
        );
        assert_eq!(
            parsed(r#"title:"say \"hi\" \\o/""#),
            vec![Term::Title(r#"say "hi" \o/"#.into())]
        );
        assert_eq!(
            parsed(r#"label:"my team=a b" label:k="#),
            vec![
                Term::Label {
                    key: "my team".into(),
                    value: "a b".into()
                },
                Term::Label {
                    key: "k".into(),
                    value: String::new()
                }
            ]
        );
        assert_eq!(parsed("title:C:\\x"), vec![Term::Title("C:\\x".into())]);
    }

    #[test]
    fn archived_terms_and_the_default_decide_the_scope() {
        let scope = |q: &str| ChatQuery::parse(q).unwrap().archive_scope();
        assert_eq!(scope(""), ArchiveScope::Only(false));
        assert_eq!(scope("title:x"), ArchiveScope::Only(false));
        assert_eq!(scope("archived:true"), ArchiveScope::Only(true));
        assert_eq!(scope("archived:any"), ArchiveScope::Both);
        assert_eq!(
            scope("archived:any archived:true"),
            ArchiveScope::Only(true)
        );
        assert_eq!(scope("archived:true archived:false"), ArchiveScope::Neither);
    }

    #[test]
    fn errors_name_the_term_and_where_it_starts() {
        assert_eq!(refused("fix"), ("fix".into(), 1));
        assert_eq!(refused("title:a  pr:abc"), ("pr:abc".into(), 10));
        assert_eq!(refused(r#"title:"open"#), (r#"title:"open"#.into(), 1));
        assert_eq!(refused("é title:"), ("é".into(), 1));
        assert_eq!(refused("title:ok ü:1"), ("ü:1".into(), 10));
        let many = "pr:1 ".repeat(MAX_TERMS + 1);
        assert_eq!(refused(&many), ("pr:1".into(), 5 * MAX_TERMS + 1));
        assert_eq!(
            ChatQuery::parse(&"x".repeat(MAX_QUERY_CHARS + 1)),
            Err(QueryError::TooLong {
                chars: MAX_QUERY_CHARS + 1
            })
        );
        let message = ChatQuery::parse("archived:maybe").unwrap_err().to_string();
        assert_eq!(
            message,
            "term `archived:maybe` at character 1: `archived` is one of `true`, `false`, `any`, not `maybe`"
        );
    }

    #[test]
    fn a_parsed_query_prints_back_to_itself() {
        for q in [
            r#"title:"fix the bug" pr:7"#,
            r#"title:"say \"hi\"""#,
            r#"label:"a b=c d""#,
            "status:waiting,error archived:any",
            "label:k=",
        ] {
            let query = ChatQuery::parse(q).unwrap();
            assert_eq!(query.to_string(), q);
        }
    }

    /// Strings made mostly of the syntax's own pieces, so that many parse.
    fn query_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("title:".to_owned()),
            Just("archived:".to_owned()),
            Just("status:".to_owned()),
            Just("pr:".to_owned()),
            Just("repo:".to_owned()),
            Just("pr_title:".to_owned()),
            Just("pr_status:".to_owned()),
            Just("client_type:".to_owned()),
            Just("label:".to_owned()),
            Just("any".to_owned()),
            Just("true".to_owned()),
            Just("none".to_owned()),
            Just("waiting,error".to_owned()),
            Just("ui".to_owned()),
            Just("12".to_owned()),
            Just("k=v".to_owned()),
            Just("\"".to_owned()),
            Just("\\".to_owned()),
            Just(":".to_owned()),
            Just("=".to_owned()),
            Just(",".to_owned()),
            Just(" ".to_owned()),
            Just("\t".to_owned()),
            Just("\u{a0}".to_owned()),
            "[a-zé日 ]{1,4}",
            any::<char>().prop_map(String::from),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|pieces| pieces.concat())
    }

    /// Text a value may hold: anything but control characters, quotes and backslashes
    /// included.
    fn text() -> impl Strategy<Value = String> {
        "[a-z \"\\\\:=,é\u{a0}日]{1,8}"
    }

    /// Any term the syntax can say.
    fn term() -> impl Strategy<Value = Term> {
        let status = prop_oneof![
            Just(ChatStatus::Waiting),
            Just(ChatStatus::Pending),
            Just(ChatStatus::Running),
            Just(ChatStatus::RequiresAction),
            Just(ChatStatus::Error),
        ];
        prop_oneof![
            text().prop_map(Term::Title),
            prop_oneof![
                Just(Archived::True),
                Just(Archived::False),
                Just(Archived::Any)
            ]
            .prop_map(Term::Archived),
            proptest::collection::vec(status, 1..4).prop_map(Term::Status),
            (1..=i32::MAX).prop_map(Term::Pr),
            text().prop_map(Term::Repo),
            text().prop_map(Term::PrTitle),
            prop_oneof![
                Just(PrStatus::Draft),
                Just(PrStatus::Open),
                Just(PrStatus::Merged),
                Just(PrStatus::Closed),
                Just(PrStatus::None)
            ]
            .prop_map(Term::PrStatus),
            prop_oneof![Just(ClientType::Ui), Just(ClientType::Api)].prop_map(Term::ClientType),
            (text(), prop_oneof![Just(String::new()), text()])
                .prop_filter_map("label keys hold no `=`", |(key, value)| (!key
                    .contains('='))
                .then_some(Term::Label { key, value })),
        ]
    }

    /// Strings of the syntax's pieces and hostile ones: U+0000, numbers past `i32`,
    /// unbalanced quotes and escapes, runs of one character.
    fn hostile() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            query_like(),
            Just("\0".to_owned()),
            Just("pr:".to_owned()),
            "[0-9]{10,40}",
            "-[0-9]{1,20}",
            Just("\"\\".to_owned()),
            ("[\"\\:= ]", 1..300usize).prop_map(|(c, n)| c.repeat(n)),
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(2000))]

        #[test]
        fn fuzz_every_query_the_syntax_can_say_prints_and_parses_back(
            terms in proptest::collection::vec(term(), 0..=MAX_TERMS)
        ) {
            let query = ChatQuery { terms };
            let printed = query.to_string();
            prop_assume!(printed.chars().count() <= MAX_QUERY_CHARS);
            prop_assert_eq!(ChatQuery::parse(&printed), Ok(query), "printed as {}", printed);
        }

        #[test]
        fn fuzz_any_string_parses_or_is_refused_without_panicking(q in any::<String>()) {
            let _ = ChatQuery::parse(&q);
        }

        #[test]
        fn fuzz_an_accepted_query_prints_back_to_the_same_query(q in query_like()) {
            if let Ok(query) = ChatQuery::parse(&q) {
                let printed = query.to_string();
                prop_assert_eq!(ChatQuery::parse(&printed), Ok(query), "{} printed as {}", q, printed);
            }
        }

        /// What the parser gives back (terms, or the 400's text) grows at most linearly
        /// with the query, whatever the query.
        #[test]
        fn fuzz_hostile_queries_give_bounded_answers(q in hostile()) {
            let chars = q.chars().count();
            match ChatQuery::parse(&q) {
                Ok(query) => {
                    prop_assert!(chars <= MAX_QUERY_CHARS);
                    prop_assert!(query.terms().len() <= MAX_TERMS);
                    let printed = query.to_string();
                    prop_assert!(
                        printed.chars().count() <= chars,
                        "{:?} printed longer, as {:?}", q, printed
                    );
                    prop_assert_eq!(ChatQuery::parse(&printed), Ok(query));
                }
                Err(e) => {
                    let shown = e.to_string().chars().count();
                    prop_assert!(
                        shown <= 3 * chars.min(MAX_QUERY_CHARS) + 512,
                        "a {}-character query got a {}-character error", chars, shown
                    );
                }
            }
        }
    }
}
