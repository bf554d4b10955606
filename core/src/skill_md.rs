//! Personal skills: the rules a skill obeys and the `SKILL.md` format it is imported from
//! (issue #12, item 7; ARCHITECTURE.md §3).
//!
//! A skill is a named markdown document. The system prompt lists each of the owner's
//! skills by name and description, and the model reads one in full when it needs it, so
//! the name must be short and safe to show anywhere and the description one line.
//!
//! A `SKILL.md` is YAML frontmatter between two `---` lines, then the markdown body:
//!
//! ```
//! use agentq_core::skill_md::parse_skill_md;
//!
//! let skill = parse_skill_md(
//!     "---\nname: release-notes\ndescription: Write release notes from a changelog.\n---\n# Release notes\n...\n",
//! )
//! .unwrap();
//! assert_eq!(skill.name, "release-notes");
//! assert_eq!(skill.description, "Write release notes from a changelog.");
//! assert_eq!(skill.body, "# Release notes\n...\n");
//!
//! let error = parse_skill_md("---\nname: Release Notes\n---\nbody\n").unwrap_err();
//! assert_eq!((error.field, error.line), ("name", Some(2)));
//! ```
//!
//! Only `name` (required) and `description` (optional) are read; other frontmatter fields
//! (`license`, `allowed-tools`, `metadata`, ...) are accepted and ignored, so files written
//! for other agents import as they are. Every refusal is a [`SkillError`] naming the field
//! and, where there is one, the line of the file, so the API's 400 can point at it.
//!
//! YAML is read with `yaml-rust2`'s event parser (pure Rust, YAML 1.2, maintained), whose
//! events carry their position: that is where the line numbers come from.

use yaml_rust2::{
    Event,
    parser::{MarkedEventReceiver, Parser},
    scanner::{Marker, TScalarStyle},
};

use crate::text::{describe_char, forbidden_char};

/// Largest skill: the `SKILL.md` file on import, the body otherwise (bytes).
pub const MAX_SKILL_BYTES: usize = 64 * 1024;
/// Most skills one user may have.
pub const MAX_SKILLS_PER_USER: i64 = 100;
/// Longest name, in characters (the `SKILL.md` convention).
pub const MAX_NAME_CHARS: usize = 64;
/// Longest description, in characters (the `SKILL.md` convention). Every description is
/// in every system prompt of its owner's chats, so it stays short.
pub const MAX_DESCRIPTION_CHARS: usize = 1024;

/// A valid skill, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkillDraft {
    /// Kebab-case name, unique per owner.
    pub name: String,
    /// One line ('' when none).
    pub description: String,
    /// The markdown body (not blank).
    pub body: String,
}

/// Why a skill or a `SKILL.md` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}`{field}` {detail}", line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct SkillError {
    /// `name`, `description`, `body`, `frontmatter` or `SKILL.md` (the whole file).
    pub field: &'static str,
    /// 1-based line of the `SKILL.md` where the problem is, when it is in one place.
    pub line: Option<usize>,
    /// What is wrong, for people.
    pub detail: String,
}

impl SkillError {
    fn new(field: &'static str, line: Option<usize>, detail: impl Into<String>) -> Self {
        Self {
            field,
            line,
            detail: detail.into(),
        }
    }
}

/// Checks a name: kebab-case (`^[a-z0-9]+(-[a-z0-9]+)*$`), at most [`MAX_NAME_CHARS`].
/// `import` is taken by the import route (`/users/me/skills/import`).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("must be at most {MAX_NAME_CHARS} characters"));
    }
    let kebab = name.split('-').all(|part| {
        !part.is_empty() && part.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9'))
    });
    if !kebab {
        return Err(format!(
            "must be kebab-case: lower-case letters and digits in words joined by single `-` \
             (`^[a-z0-9]+(-[a-z0-9]+)*$`), not `{}`",
            name.escape_debug()
        ));
    }
    if name == "import" {
        return Err("`import` is reserved (it names the import route); choose another".into());
    }
    Ok(())
}

/// The description as stored: runs of whitespace (line breaks of a folded YAML scalar
/// included) become one space, so it is one line in the system prompt's list. Other
/// control characters are refused as in titles (`core::text`).
pub fn normalize_description(description: &str) -> Result<String, String> {
    let one_line = description.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "must be at most {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if let Some(c) = forbidden_char(&one_line) {
        return Err(format!(
            "must not contain control characters (found {})",
            describe_char(c)
        ));
    }
    Ok(one_line)
}

/// Checks a body: not blank, at most [`MAX_SKILL_BYTES`]. (U+0000 is welcome: the store
/// writes it as U+FFFD, as in messages.)
pub fn check_body(body: &str) -> Result<(), String> {
    if body.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if body.len() > MAX_SKILL_BYTES {
        return Err(format!(
            "is {} bytes; a skill may take at most {MAX_SKILL_BYTES}",
            body.len()
        ));
    }
    Ok(())
}

/// Checks a skill given field by field (the JSON API).
pub fn check_skill(name: &str, description: &str, body: &str) -> Result<SkillDraft, SkillError> {
    check_name(name).map_err(|d| SkillError::new("name", None, d))?;
    let description =
        normalize_description(description).map_err(|d| SkillError::new("description", None, d))?;
    check_body(body).map_err(|d| SkillError::new("body", None, d))?;
    Ok(SkillDraft {
        name: name.to_owned(),
        description,
        body: body.to_owned(),
    })
}

/// Parses and checks a `SKILL.md` (see the module page for the format).
pub fn parse_skill_md(text: &str) -> Result<SkillDraft, SkillError> {
    if text.len() > MAX_SKILL_BYTES {
        return Err(SkillError::new(
            "SKILL.md",
            None,
            format!(
                "is {} bytes; a skill may take at most {MAX_SKILL_BYTES}",
                text.len()
            ),
        ));
    }
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let (frontmatter, body, body_line) = split_frontmatter(text)?;
    let fields = read_fields(frontmatter)?;
    let name = match fields.name {
        None => {
            return Err(SkillError::new(
                "name",
                Some(1),
                "is required in the frontmatter (`name: my-skill`)",
            ));
        }
        Some(Field { value: None, line }) => {
            return Err(SkillError::new("name", Some(line), "must be a string"));
        }
        Some(Field {
            value: Some(name),
            line,
        }) => {
            check_name(&name).map_err(|d| SkillError::new("name", Some(line), d))?;
            name
        }
    };
    let description = match fields.description {
        None => String::new(),
        Some(Field { value: None, line }) => {
            return Err(SkillError::new(
                "description",
                Some(line),
                "must be a string",
            ));
        }
        Some(Field {
            value: Some(description),
            line,
        }) => normalize_description(&description)
            .map_err(|d| SkillError::new("description", Some(line), d))?,
    };
    check_body(body).map_err(|d| SkillError::new("body", Some(body_line), d))?;
    Ok(SkillDraft {
        name,
        description,
        body: body.to_owned(),
    })
}

/// Splits `---\n<frontmatter>---\n<body>`: the frontmatter, the body and the body's first
/// line number.
fn split_frontmatter(text: &str) -> Result<(&str, &str, usize), SkillError> {
    let mut lines = text.split_inclusive('\n');
    let first = lines.next().unwrap_or_default();
    if first.trim_end() != "---" {
        return Err(SkillError::new(
            "frontmatter",
            Some(1),
            "is missing: a SKILL.md starts with a `---` line, then YAML fields \
             (`name: my-skill`, `description: ...`), then another `---` line and the body",
        ));
    }
    let start = first.len();
    let mut offset = start;
    for (i, line) in lines.enumerate() {
        if line.trim_end() == "---" {
            let frontmatter = &text[start..offset];
            let body = &text[offset + line.len()..];
            // Line 1 is the opening `---`, line i + 2 the closing one.
            return Ok((frontmatter, body, i + 3));
        }
        offset += line.len();
    }
    Err(SkillError::new(
        "frontmatter",
        Some(1),
        "is not closed: no `---` line ends the frontmatter that starts on line 1",
    ))
}

/// A top-level frontmatter field: its value if it is a string, and its line in the file.
struct Field {
    value: Option<String>,
    line: usize,
}

/// The frontmatter fields a skill reads.
#[derive(Default)]
struct Fields {
    name: Option<Field>,
    description: Option<Field>,
}

/// Reads `name` and `description` from the frontmatter's YAML.
fn read_fields(frontmatter: &str) -> Result<Fields, SkillError> {
    let mut reader = FieldReader::default();
    let mut parser = Parser::new_from_str(frontmatter);
    parser.load(&mut reader, false).map_err(|e| {
        SkillError::new(
            "frontmatter",
            Some(file_line(e.marker())),
            format!("is not valid YAML: {}", e.info()),
        )
    })?;
    if let Some(e) = reader.error {
        return Err(e);
    }
    Ok(reader.fields)
}

/// The frontmatter starts on line 2 of the file.
fn file_line(mark: &Marker) -> usize {
    mark.line() + 1
}

/// Walks the parser's events and keeps the top-level `name` and `description`.
#[derive(Default)]
struct FieldReader {
    /// Nesting of mappings and sequences; the fields live at depth 1.
    depth: usize,
    /// Whether the top-level node was seen (and was a mapping).
    seen_root: bool,
    /// The key whose value comes next at depth 1, with its line.
    pending_key: Option<(String, usize)>,
    /// A non-scalar key at depth 1 is being skipped.
    skipping_key: bool,
    fields: Fields,
    error: Option<SkillError>,
}

impl FieldReader {
    fn fail(&mut self, field: &'static str, line: usize, detail: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(SkillError::new(field, Some(line), detail));
        }
    }

    /// A complete value at depth 1 (`None` when it is not a string).
    fn value(&mut self, value: Option<String>) {
        let Some((key, line)) = self.pending_key.take() else {
            return;
        };
        let slot = match key.as_str() {
            "name" => &mut self.fields.name,
            "description" => &mut self.fields.description,
            _ => return,
        };
        if let Some(first) = slot {
            let first = first.line;
            let field = if key == "name" { "name" } else { "description" };
            self.fail(
                field,
                line,
                format!("is given twice (first on line {first})"),
            );
            return;
        }
        *slot = Some(Field { value, line });
    }
}

/// A plain scalar YAML reads as null.
fn is_null(value: &str, style: TScalarStyle) -> bool {
    style == TScalarStyle::Plain && matches!(value, "" | "~" | "null" | "Null" | "NULL")
}

impl MarkedEventReceiver for FieldReader {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = file_line(&mark);
        match event {
            Event::MappingStart(..) | Event::SequenceStart(..) => {
                if !self.seen_root {
                    self.seen_root = true;
                    if matches!(event, Event::SequenceStart(..)) {
                        self.fail(
                            "frontmatter",
                            line,
                            "must be YAML fields (`name: my-skill`), not a list",
                        );
                    }
                } else if self.depth == 1 {
                    if self.pending_key.is_some() {
                        // A list or mapping as a value: not a string.
                        self.value(None);
                    } else {
                        self.skipping_key = true;
                    }
                }
                self.depth += 1;
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth == 1 && self.skipping_key {
                    self.skipping_key = false;
                    self.pending_key = Some((String::new(), line));
                }
            }
            Event::Scalar(value, style, ..) => {
                if !self.seen_root {
                    self.seen_root = true;
                    if !is_null(&value, style) {
                        self.fail(
                            "frontmatter",
                            line,
                            "must be YAML fields (`name: my-skill`), not a single value",
                        );
                    }
                } else if self.depth == 1 {
                    if self.pending_key.is_some() {
                        let value = (!is_null(&value, style)).then_some(value);
                        self.value(value);
                    } else {
                        self.pending_key = Some((value, line));
                    }
                }
            }
            Event::Alias(_) if self.depth == 1 => {
                if self.pending_key.is_some() {
                    self.value(None);
                } else {
                    self.pending_key = Some((String::new(), line));
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(text: &str) -> (&'static str, Option<usize>, String) {
        let e = parse_skill_md(text).unwrap_err();
        (e.field, e.line, e.detail)
    }

    fn at(refusal: (&'static str, Option<usize>, String)) -> (&'static str, Option<usize>) {
        (refusal.0, refusal.1)
    }

    #[test]
    fn a_skill_md_gives_name_description_and_body() {
        let skill = parse_skill_md(
            "---\r\nname: pdf-forms\r\ndescription: >\r\n  Fill PDF\r\n  forms.\r\nlicense: MIT\r\nmetadata:\r\n  a: [1, 2]\r\n---\r\n# Forms\r\n",
        )
        .unwrap();
        assert_eq!(skill.name, "pdf-forms");
        assert_eq!(skill.description, "Fill PDF forms.");
        assert_eq!(skill.body, "# Forms\r\n");
    }

    #[test]
    fn description_is_optional_and_quoted_names_are_strings() {
        let skill = parse_skill_md("\u{FEFF}---\nname: \"v2\"\n---\nbody").unwrap();
        assert_eq!(
            (skill.name.as_str(), skill.description.as_str()),
            ("v2", "")
        );
    }

    #[test]
    fn refusals_name_the_field_and_the_line() {
        assert_eq!(refused("# no frontmatter\n").0, "frontmatter");
        assert_eq!(refused("---\nname: x\nbody\n").0, "frontmatter");
        assert_eq!(refused("---\ndescription: d\n---\nbody\n").0, "name");
        let (field, line, detail) = refused("---\ndescription: d\nname: Bad_Name\n---\nbody\n");
        assert_eq!((field, line), ("name", Some(3)));
        assert!(detail.contains("kebab-case"), "{detail}");
        assert_eq!(refused("---\nname: a--b\n---\nb\n").0, "name");
        assert_eq!(refused("---\nname: -a\n---\nb\n").0, "name");
        assert_eq!(refused("---\nname: import\n---\nb\n").0, "name");
        assert_eq!(at(refused("---\nname: [a]\n---\nb\n")), ("name", Some(2)));
        assert_eq!(refused("---\nname: ~\n---\nb\n").1, Some(2));
        assert_eq!(
            at(refused("---\nname: a\nname: b\n---\nb\n")),
            ("name", Some(3))
        );
        let (field, line, detail) = refused("---\nname: a\ndescription: [unclosed\n---\nb\n");
        assert_eq!(field, "frontmatter");
        assert!(
            line.is_some() && detail.contains("not valid YAML"),
            "{line:?} {detail}"
        );
        assert_eq!(refused("---\n- a\n---\nb\n").0, "frontmatter");
        assert_eq!(refused("---\nname: a\n---\n \n").0, "body");
        assert_eq!(refused("---\nname: a\n---\n\n").1, Some(4));
        let (field, _, detail) = refused("---\nname: a\ndescription: \"x\\ey\"\n---\nb\n");
        assert_eq!(field, "description");
        assert!(detail.contains("U+001B"), "{detail}");
        let big = format!("---\nname: a\n---\n{}", "x".repeat(MAX_SKILL_BYTES));
        assert_eq!(refused(&big).0, "SKILL.md");
    }

    #[test]
    fn names_follow_the_kebab_case_rule() {
        for good in ["a", "a1", "pdf-forms", "x-2-y", &"a".repeat(64)] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "a-",
            "-a",
            "a--b",
            "a b",
            "é",
            &"a".repeat(65),
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    /// Files made of frontmatter and YAML pieces (anchors, aliases, tags, flow and block
    /// collections, directives) and hostile ones (U+0000, a BOM, unclosed brackets, runs
    /// of one opener), so that many reach the YAML parser and some parse.
    fn skill_md_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("---\n".to_owned()),
            Just("---\r\n".to_owned()),
            Just("name: ".to_owned()),
            Just("description: ".to_owned()),
            Just("my-skill\n".to_owned()),
            Just("\n".to_owned()),
            Just("  ".to_owned()),
            Just("- ".to_owned()),
            Just("? ".to_owned()),
            Just(": ".to_owned()),
            Just("&a ".to_owned()),
            Just("*a ".to_owned()),
            Just("!!str ".to_owned()),
            Just("!<tag:x> ".to_owned()),
            Just("%YAML 1.2\n".to_owned()),
            Just("%TAG ! tag:x:\n".to_owned()),
            Just("|\n".to_owned()),
            Just(">-\n".to_owned()),
            Just("\"".to_owned()),
            Just("'".to_owned()),
            Just("\\".to_owned()),
            Just("#".to_owned()),
            Just("\0".to_owned()),
            Just("\u{FEFF}".to_owned()),
            Just("\t".to_owned()),
            Just("\r".to_owned()),
            ("[\\[{]", 1..400usize).prop_map(|(c, n)| c.repeat(n)),
            ("[\\]}]", 1..50usize).prop_map(|(c, n)| c.repeat(n)),
            "[a-z0-9é日 -]{1,12}",
            "[0-9]{20,60}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    /// A valid skill, written as a `SKILL.md` would be.
    fn skill() -> impl Strategy<Value = SkillDraft> {
        let name = "[a-z0-9]{1,8}(-[a-z0-9]{1,8}){0,3}"
            .prop_filter("`import` is reserved", |n| n != "import");
        let description = prop_oneof![
            Just(String::new()),
            "[a-zA-Z0-9 .,:#'\"\\\\{}\\[\\]&*!|>%@`é日😀-]{1,80}",
        ]
        .prop_map(|d| normalize_description(&d).unwrap());
        let body = "[^\u{0}]{0,200}"
            .prop_map(|b| format!("# body\n{b}"))
            .prop_filter("a body is not blank", |b| check_body(b).is_ok());
        (name, description, body).prop_map(|(name, description, body)| SkillDraft {
            name,
            description,
            body,
        })
    }

    /// `skill` as a file: name and description as double-quoted (JSON) scalars, which YAML
    /// reads as the same text (a plain `null` would read as no value).
    fn written(skill: &SkillDraft) -> String {
        let quoted = |text: &str| serde_json::to_string(text).unwrap();
        format!(
            "---\nname: {}\ndescription: {}\nlicense: MIT\n---\n{}",
            quoted(&skill.name),
            quoted(&skill.description),
            skill.body
        )
    }

    proptest! {
        #![proptest_config(crate::fuzzing::config(1000))]

        #[test]
        fn fuzz_any_text_imports_or_is_refused_without_panicking(text in any::<String>()) {
            let _ = parse_skill_md(&text);
        }

        /// Whatever the file, the skill or the refusal is bounded by the file: an accepted
        /// skill holds only text of the file, a refusal names a line of it.
        #[test]
        fn fuzz_hostile_files_give_bounded_answers(text in skill_md_like()) {
            match parse_skill_md(&text) {
                Ok(skill) => {
                    prop_assert!(text.len() <= MAX_SKILL_BYTES);
                    prop_assert!(
                        skill.name.len() + skill.description.len() + skill.body.len() <= text.len()
                    );
                    prop_assert!(check_skill(&skill.name, &skill.description, &skill.body).is_ok());
                }
                Err(e) => {
                    let lines = text.split_inclusive('\n').count().max(1);
                    prop_assert!(
                        e.line.is_none_or(|l| l >= 1 && l <= lines + 1),
                        "line {:?} of a {}-line file", e.line, lines
                    );
                    prop_assert!(e.detail.len() <= 2 * text.len().min(MAX_SKILL_BYTES) + 1024);
                }
            }
        }

        #[test]
        fn fuzz_a_written_skill_imports_as_itself(skill in skill()) {
            let text = written(&skill);
            prop_assert_eq!(parse_skill_md(&text), Ok(skill), "{}", text);
        }
    }
}
