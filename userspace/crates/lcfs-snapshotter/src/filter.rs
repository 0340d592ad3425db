//! containerd's filter syntax, as `ctr snapshots ls` and containerd's garbage collector send it
//! with `Walk` (`List` in the gRPC API).
//!
//! ```text
//! filters   := one string per filter; an item matches if any filter matches (OR)
//! filter    := selector ("," selector)*          all selectors must match (AND); "" matches all
//! selector  := fieldpath [operator value]         without operator: the field is present
//! fieldpath := field ("." field)*
//! field     := quoted | [A-Za-z0-9_-]+
//! operator  := "==" | "!=" | "~=" (regular expression) | "@=" (contains)
//! value     := quoted | a run of printable characters other than "," and white space
//! quoted    := "..." | /.../ | |...|  with Go string escapes (\n, \t, \\, \xHH, \uHHHH, ...,
//!              and the quote character itself)
//! ```
//!
//! White space between tokens is skipped. Snapshots have the fields `kind` (`active`, `view` or
//! `committed`), `name`, `parent` and `labels.<key>` (`labels."containerd.io/gc.root"`; the
//! parts of the field path after `labels` are joined with `.`). `!=` also matches a missing
//! field, whose value counts as empty. Regular expressions use the `regex` crate's syntax, the
//! same as Go's RE2 for what containerd sends; a bad one is an error when parsing, not a filter
//! that matches nothing.

use regex::Regex;

/// A syntax error in a filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("filter {input:?} at byte {pos}: {msg}")]
pub struct ParseError {
    input: String,
    pos: usize,
    msg: String,
}

/// How a selector compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// The field is present.
    Present,
    /// `==`
    Equal,
    /// `!=`
    NotEqual,
    /// `~=`
    Matches,
    /// `@=`
    Contains,
}

/// One `fieldpath operator value` test.
#[derive(Debug, Clone)]
pub struct Selector {
    /// The field path, unquoted.
    pub fieldpath: Vec<String>,
    /// The operator.
    pub op: Op,
    /// The value, unquoted (empty for [`Op::Present`]).
    pub value: String,
    re: Option<Regex>,
}

/// What a filter looks at: the value of a field path, `None` when absent.
pub trait Fields {
    /// The value at `path`.
    fn field(&self, path: &[String]) -> Option<String>;
}

/// Filters: any of the alternatives, each a conjunction of selectors. No alternative matches
/// everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    any: Vec<Vec<Selector>>,
}

impl Filter {
    /// Parses the filter strings of a request (OR of the strings).
    pub fn parse_all<S: AsRef<str>>(filters: &[S]) -> Result<Filter, ParseError> {
        let mut any = Vec::new();
        for f in filters {
            any.push(parse(f.as_ref())?);
        }
        Ok(Filter { any })
    }

    /// Whether `item` matches.
    pub fn matches(&self, item: &dyn Fields) -> bool {
        self.any.is_empty()
            || self
                .any
                .iter()
                .any(|all| all.iter().all(|s| s.matches(item)))
    }
}

impl Selector {
    fn matches(&self, item: &dyn Fields) -> bool {
        let value = item.field(&self.fieldpath);
        match self.op {
            Op::Present => value.is_some(),
            Op::Equal => value.as_deref() == Some(self.value.as_str()),
            Op::NotEqual => value.as_deref().unwrap_or("") != self.value,
            Op::Contains => value.as_deref().unwrap_or("").contains(&self.value),
            Op::Matches => self
                .re
                .as_ref()
                .is_some_and(|re| re.is_match(value.as_deref().unwrap_or(""))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Eof,
    Field(String),
    Value(String),
    Quoted(String),
    Comma,
    Dot,
    Op(Op),
}

struct Scanner<'a> {
    input: &'a str,
    pos: usize,
    /// The next token is a value (an operator came last).
    value: bool,
}

impl<'a> Scanner<'a> {
    fn err(&self, pos: usize, msg: impl Into<String>) -> ParseError {
        ParseError {
            input: self.input.to_owned(),
            pos,
            msg: msg.into(),
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.input[self.pos..].chars().next()
    }

    /// The next token and where it starts.
    fn scan(&mut self) -> Result<(usize, Tok), ParseError> {
        while let Some(c) = self.peek_char() {
            if !c.is_whitespace() {
                break;
            }
            self.pos += c.len_utf8();
        }
        let start = self.pos;
        let Some(c) = self.peek_char() else {
            return Ok((start, Tok::Eof));
        };
        if c == '\0' {
            return Err(self.err(start, "unexpected NUL"));
        }
        if matches!(c, '"' | '/' | '|') {
            self.value = false;
            return Ok((start, Tok::Quoted(self.quoted(c)?)));
        }
        if c == ',' || c == '.' {
            self.pos += 1;
            self.value = false;
            return Ok((start, if c == ',' { Tok::Comma } else { Tok::Dot }));
        }
        if is_op_char(c) {
            let len = self.input[start..]
                .find(|c| !is_op_char(c))
                .unwrap_or(self.input.len() - start);
            self.pos += len;
            self.value = true;
            let op = match &self.input[start..self.pos] {
                "==" => Op::Equal,
                "!=" => Op::NotEqual,
                "~=" => Op::Matches,
                "@=" => Op::Contains,
                other => return Err(self.err(start, format!("unsupported operator {other:?}"))),
            };
            return Ok((start, Tok::Op(op)));
        }
        if self.value {
            self.value = false;
            let len = self.input[start..]
                .find(|c: char| !is_value_char(c))
                .unwrap_or(self.input.len() - start);
            if len == 0 {
                return Err(self.err(start, format!("unexpected {c:?}")));
            }
            self.pos += len;
            return Ok((start, Tok::Value(self.input[start..self.pos].to_owned())));
        }
        if is_field_char(c) {
            let len = self.input[start..]
                .find(|c| !is_field_char(c))
                .unwrap_or(self.input.len() - start);
            self.pos += len;
            return Ok((start, Tok::Field(self.input[start..self.pos].to_owned())));
        }
        Err(self.err(start, format!("unexpected {c:?}")))
    }

    /// A quoted string starting at `self.pos` with `quote`, unquoted.
    fn quoted(&mut self, quote: char) -> Result<String, ParseError> {
        let start = self.pos;
        self.pos += 1;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek_char() else {
                return Err(self.err(start, "quoted string not terminated"));
            };
            self.pos += c.len_utf8();
            match c {
                '\n' => return Err(self.err(start, "quoted string not terminated")),
                c if c == quote => return Ok(out),
                '\\' => out.push(self.escape(quote)?),
                c => out.push(c),
            }
        }
    }

    /// The character of the escape after a backslash (Go's escapes, the quote included).
    fn escape(&mut self, quote: char) -> Result<char, ParseError> {
        let at = self.pos - 1;
        let Some(c) = self.peek_char() else {
            return Err(self.err(at, "quoted string not terminated"));
        };
        self.pos += c.len_utf8();
        let simple = match c {
            'a' => Some('\u{7}'),
            'b' => Some('\u{8}'),
            'f' => Some('\u{c}'),
            'n' => Some('\n'),
            'r' => Some('\r'),
            't' => Some('\t'),
            'v' => Some('\u{b}'),
            '\\' => Some('\\'),
            c if c == quote => Some(c),
            _ => None,
        };
        if let Some(s) = simple {
            return Ok(s);
        }
        let (digits, radix) = match c {
            'x' => (2, 16),
            'u' => (4, 16),
            'U' => (8, 16),
            '0'..='7' => {
                self.pos -= 1;
                (3, 8)
            }
            _ => return Err(self.err(at, format!("illegal escape \\{c}"))),
        };
        let text = self
            .input
            .get(self.pos..self.pos + digits)
            .ok_or_else(|| self.err(at, "short escape"))?;
        let value = u32::from_str_radix(text, radix)
            .ok()
            .filter(|_| text.chars().all(|c| c.is_digit(radix)))
            .ok_or_else(|| self.err(at, format!("illegal escape \\{c}{text}")))?;
        self.pos += digits;
        char::from_u32(value).ok_or_else(|| self.err(at, "escape is not a character"))
    }
}

fn is_op_char(c: char) -> bool {
    matches!(c, '=' | '!' | '~' | '@')
}

fn is_field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_value_char(c: char) -> bool {
    c != ',' && !c.is_whitespace() && !c.is_control()
}

/// Parses one filter string (a conjunction of selectors).
fn parse(input: &str) -> Result<Vec<Selector>, ParseError> {
    if input.is_empty() {
        return Ok(Vec::new());
    }
    let mut s = Scanner {
        input,
        pos: 0,
        value: false,
    };
    let mut all = Vec::new();
    loop {
        all.push(selector(&mut s)?);
        match s.scan()? {
            (_, Tok::Eof) => return Ok(all),
            (_, Tok::Comma) => {}
            (pos, tok) => return Err(s.err(pos, format!("unexpected {tok:?}"))),
        }
    }
}

fn selector(s: &mut Scanner<'_>) -> Result<Selector, ParseError> {
    let mut fieldpath = vec![field(s)?];
    loop {
        let save = s.pos;
        match s.scan()? {
            (_, Tok::Dot) => fieldpath.push(field(s)?),
            (_, Tok::Op(op)) => {
                let (pos, value) = match s.scan()? {
                    (pos, Tok::Value(v) | Tok::Field(v) | Tok::Quoted(v)) => (pos, v),
                    (pos, _) => return Err(s.err(pos, "expected a value")),
                };
                let re = if op == Op::Matches {
                    Some(
                        Regex::new(&value)
                            .map_err(|e| s.err(pos, format!("bad regular expression: {e}")))?,
                    )
                } else {
                    None
                };
                return Ok(Selector {
                    fieldpath,
                    op,
                    value,
                    re,
                });
            }
            (_, Tok::Comma | Tok::Eof) => {
                s.pos = save;
                return Ok(Selector {
                    fieldpath,
                    op: Op::Present,
                    value: String::new(),
                    re: None,
                });
            }
            (pos, tok) => return Err(s.err(pos, format!("unexpected {tok:?}"))),
        }
    }
}

fn field(s: &mut Scanner<'_>) -> Result<String, ParseError> {
    match s.scan()? {
        (_, Tok::Field(f) | Tok::Quoted(f)) => Ok(f),
        (pos, _) => Err(s.err(pos, "expected a field name or a quoted string")),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    struct Item {
        name: &'static str,
        parent: &'static str,
        kind: &'static str,
        labels: BTreeMap<String, String>,
    }

    impl Fields for Item {
        fn field(&self, path: &[String]) -> Option<String> {
            match path.first().map(String::as_str)? {
                "name" => Some(self.name.into()),
                "parent" => Some(self.parent.into()),
                "kind" => Some(self.kind.into()),
                "labels" => self.labels.get(&path[1..].join(".")).cloned(),
                _ => None,
            }
        }
    }

    fn items() -> Vec<Item> {
        let labels = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        vec![
            Item {
                name: "base",
                parent: "",
                kind: "committed",
                labels: labels(&[("containerd.io/gc.root", "yes"), ("a.b", "c")]),
            },
            Item {
                name: "child",
                parent: "base",
                kind: "active",
                labels: labels(&[("foo", "bar baz"), ("x", "1,2")]),
            },
            Item {
                name: "view-1",
                parent: "base",
                kind: "view",
                labels: labels(&[]),
            },
        ]
    }

    /// Names of the items the filters select.
    fn select(filters: &[&str]) -> Vec<&'static str> {
        let f = Filter::parse_all(filters).unwrap_or_else(|e| panic!("{filters:?}: {e}"));
        items()
            .into_iter()
            .filter(|i| f.matches(i))
            .map(|i| i.name)
            .collect()
    }

    #[test]
    fn selectors_select() {
        let all = vec!["base", "child", "view-1"];
        let cases: &[(&[&str], Vec<&str>)] = &[
            (&[], all.clone()),
            (&[""], all.clone()),
            (&["name==child"], vec!["child"]),
            (&["name!=child"], vec!["base", "view-1"]),
            (&["parent==base"], vec!["child", "view-1"]),
            (&["parent!=base"], vec!["base"]),
            (&["parent==\"\""], vec!["base"]),
            (&["kind==committed"], vec!["base"]),
            (&["kind==active,name==child"], vec!["child"]),
            (&["kind==active,name==base"], vec![]),
            (&["kind==view", "kind==committed"], vec!["base", "view-1"]),
            (&["labels.foo"], vec!["child"]),
            (&["labels.nothing"], vec![]),
            (&["labels.\"a.b\"==c"], vec!["base"]),
            (&["labels.a.b==c"], vec!["base"]),
            (&["labels.\"containerd.io/gc.root\""], vec!["base"]),
            (&["labels.\"containerd.io/gc.root\"==yes"], vec!["base"]),
            (&["labels.foo==\"bar baz\""], vec!["child"]),
            (&["labels.x==\"1,2\""], vec!["child"]),
            (&["labels.foo!=nope"], all.clone()),
            (&["name~=^v"], vec!["view-1"]),
            (&["name~=/^(base|child)$/"], vec!["base", "child"]),
            (&["name~=|e|"], vec!["base", "view-1"]),
            (&["name@=hil"], vec!["child"]),
            (&["  name == child  "], vec!["child"]),
            (&["name==child , kind==active"], vec!["child"]),
            (&["name==view-1"], vec!["view-1"]),
            (&["\"name\"==base"], vec!["base"]),
            (&["name==\"b\\x61se\""], vec!["base"]),
            (&["name==\"\\u0062ase\""], vec!["base"]),
            (&["name==\"\\142ase\""], vec!["base"]),
            (&["unknown"], vec![]),
            (&["unknown!=x"], all.clone()),
            (&["name"], all.clone()),
        ];
        for (filters, want) in cases {
            assert_eq!(&select(filters), want, "{filters:?}");
        }
    }

    #[test]
    fn values_may_hold_operator_and_dot_characters() {
        let f = Filter::parse_all(&["name==a.b=c"]).unwrap();
        assert_eq!(f.any[0][0].value, "a.b=c");
        let f = Filter::parse_all(&["name==sha256:ab/cd"]).unwrap();
        assert_eq!(f.any[0][0].value, "sha256:ab/cd");
        let f = Filter::parse_all(&["labels.\"x\\\"y\"==1"]).unwrap();
        assert_eq!(f.any[0][0].fieldpath, ["labels", "x\"y"]);
        let f = Filter::parse_all(&["name~=/a\\/b/"]).unwrap();
        assert_eq!(f.any[0][0].value, "a/b");
    }

    #[test]
    fn bad_syntax_is_an_error() {
        for bad in [
            " ",
            ",",
            "name==",
            "name=x",
            "name===x",
            "name=!x",
            "==x",
            "name==x,",
            ",name==x",
            "name==x,,kind==view",
            "name..x",
            "name.",
            ".name",
            "name==.x",
            "name x",
            "name==x y",
            "name==\"open",
            "name==\"a\nb\"",
            "name==\"\\q\"",
            "name==\"\\x4\"",
            "name==\"\\xZZ\"",
            "name==\"\\uD800\"",
            "name==/a\\\"b/",
            "labels.\"unterminated",
            "name~=(",
            "name~=\"[\"",
            "na$me==x",
            "name==x\0",
        ] {
            let err = Filter::parse_all(&[bad]);
            assert!(err.is_err(), "{bad:?} parsed: {err:?}");
        }
        // One bad filter among good ones fails the whole request.
        assert!(Filter::parse_all(&["name==x", "name=="]).is_err());
    }
}
