//! A small backtracking regular-expression matcher for `matches()`, `matchesFull()` and
//! `replaceMatches()`: literals, `.`, classes (`[a-z]`, `[^...]`, `\d \w \s` and their
//! negations), groups with alternation (`(a|b)`, `(?:...)`), greedy and lazy
//! quantifiers (`* + ? {n} {n,} {n,m}`) and the anchors `^ $`. `.` also matches line
//! breaks (single-line mode, as FHIRPath requires). Work is bounded: a pattern that
//! would take too long fails with an error instead of stalling the write path.

use std::cell::Cell;

use crate::Error;

#[derive(Debug, Clone)]
enum ClassItem {
    Range(char, char),
    Digit(bool),
    Word(bool),
    Space(bool),
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class(Vec<ClassItem>, bool),
    Start,
    End,
    Group(Vec<Vec<Node>>),
    Repeat(Box<Node>, u32, Option<u32>, bool),
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    /// The whole pattern as one group.
    root: Vec<Node>,
}

/// Upper bound on matcher steps for one call.
const STEP_LIMIT: usize = 2_000_000;
/// Longest input the recursive matcher accepts.
const INPUT_LIMIT: usize = 4096;

fn syntax(msg: &str) -> Error {
    Error::Semantic(format!("invalid regular expression: {msg}"))
}

struct Parser<'p> {
    chars: Vec<char>,
    pos: usize,
    _src: &'p str,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn alternation(&mut self) -> Result<Vec<Vec<Node>>, Error> {
        let mut alts = vec![self.sequence()?];
        while self.peek() == Some('|') {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(alts)
    }

    fn sequence(&mut self) -> Result<Vec<Node>, Error> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            self.pos += 1;
            let node = match c {
                '.' => Node::Any,
                '^' => Node::Start,
                '$' => Node::End,
                '(' => {
                    if self.chars.get(self.pos..self.pos + 2) == Some(&['?', ':']) {
                        self.pos += 2;
                    }
                    let alts = self.alternation()?;
                    if self.peek() != Some(')') {
                        return Err(syntax("unclosed group"));
                    }
                    self.pos += 1;
                    Node::Group(alts)
                }
                '[' => self.class()?,
                '\\' => self.escape()?,
                '*' | '+' | '?' | '{' => return Err(syntax("nothing to repeat")),
                c => Node::Char(c),
            };
            let node = self.quantified(node)?;
            seq.push(node);
        }
        Ok(seq)
    }

    fn number(&mut self) -> Option<u32> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect::<String>().parse().ok()
    }

    fn quantified(&mut self, node: Node) -> Result<Node, Error> {
        let (min, max) = match self.peek() {
            Some('*') => (0, None),
            Some('+') => (1, None),
            Some('?') => (0, Some(1)),
            Some('{') => {
                let save = self.pos;
                self.pos += 1;
                let Some(min) = self.number() else {
                    self.pos = save;
                    return Ok(node);
                };
                let max = if self.peek() == Some(',') {
                    self.pos += 1;
                    self.number()
                } else {
                    Some(min)
                };
                if self.peek() != Some('}') {
                    return Err(syntax("bad repetition"));
                }
                (min, max)
            }
            _ => return Ok(node),
        };
        self.pos += 1;
        let greedy = if self.peek() == Some('?') {
            self.pos += 1;
            false
        } else {
            true
        };
        if matches!(node, Node::Start | Node::End) {
            return Err(syntax("nothing to repeat"));
        }
        Ok(Node::Repeat(Box::new(node), min, max, greedy))
    }

    fn escaped_char(c: char) -> char {
        match c {
            'n' => '\n',
            't' => '\t',
            'r' => '\r',
            'f' => '\u{c}',
            other => other,
        }
    }

    fn escape(&mut self) -> Result<Node, Error> {
        let c = self.peek().ok_or_else(|| syntax("trailing backslash"))?;
        self.pos += 1;
        Ok(match c {
            'd' | 'D' => Node::Class(vec![ClassItem::Digit(true)], c == 'D'),
            'w' | 'W' => Node::Class(vec![ClassItem::Word(true)], c == 'W'),
            's' | 'S' => Node::Class(vec![ClassItem::Space(true)], c == 'S'),
            c => Node::Char(Self::escaped_char(c)),
        })
    }

    fn class(&mut self) -> Result<Node, Error> {
        let negated = self.peek() == Some('^');
        if negated {
            self.pos += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = self.peek().ok_or_else(|| syntax("unclosed class"))?;
            self.pos += 1;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = if c == '\\' {
                let e = self.peek().ok_or_else(|| syntax("trailing backslash"))?;
                self.pos += 1;
                match e {
                    'd' | 'D' => {
                        items.push(ClassItem::Digit(e == 'd'));
                        continue;
                    }
                    'w' | 'W' => {
                        items.push(ClassItem::Word(e == 'w'));
                        continue;
                    }
                    's' | 'S' => {
                        items.push(ClassItem::Space(e == 's'));
                        continue;
                    }
                    e => Self::escaped_char(e),
                }
            } else {
                c
            };
            if self.peek() == Some('-') && self.chars.get(self.pos + 1).is_some_and(|n| *n != ']') {
                self.pos += 1;
                let mut hi = self.peek().ok_or_else(|| syntax("unclosed class"))?;
                self.pos += 1;
                if hi == '\\' {
                    hi = Self::escaped_char(self.peek().ok_or_else(|| syntax("trailing backslash"))?);
                    self.pos += 1;
                }
                items.push(ClassItem::Range(lo, hi));
            } else {
                items.push(ClassItem::Range(lo, lo));
            }
        }
        Ok(Node::Class(items, negated))
    }
}

fn class_has(items: &[ClassItem], c: char) -> bool {
    items.iter().any(|i| match i {
        ClassItem::Range(lo, hi) => (*lo..=*hi).contains(&c),
        ClassItem::Digit(p) => c.is_ascii_digit() == *p,
        ClassItem::Word(p) => (c.is_ascii_alphanumeric() || c == '_') == *p,
        ClassItem::Space(p) => c.is_whitespace() == *p,
    })
}

struct Matcher<'t> {
    text: &'t [char],
    steps: Cell<usize>,
}

impl Matcher<'_> {
    fn tick(&self) -> bool {
        let n = self.steps.get() + 1;
        self.steps.set(n);
        n <= STEP_LIMIT
    }

    fn one(&self, node: &Node, pos: usize) -> Option<usize> {
        let c = *self.text.get(pos)?;
        let ok = match node {
            Node::Char(x) => *x == c,
            Node::Any => true,
            Node::Class(items, neg) => class_has(items, c) != *neg,
            _ => false,
        };
        ok.then_some(pos + 1)
    }

    fn seq(&self, nodes: &[Node], pos: usize, k: &dyn Fn(usize) -> bool) -> bool {
        if !self.tick() {
            return false;
        }
        let Some((node, rest)) = nodes.split_first() else {
            return k(pos);
        };
        match node {
            Node::Start => pos == 0 && self.seq(rest, pos, k),
            Node::End => pos == self.text.len() && self.seq(rest, pos, k),
            Node::Group(alts) => alts.iter().any(|alt| self.seq(alt, pos, &|p| self.seq(rest, p, k))),
            Node::Repeat(inner, min, max, greedy) => {
                self.repeat(inner, *min, *max, *greedy, 0, pos, &|p| self.seq(rest, p, k))
            }
            simple => self.one(simple, pos).is_some_and(|p| self.seq(rest, p, k)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn repeat(
        &self,
        inner: &Node,
        min: u32,
        max: Option<u32>,
        greedy: bool,
        count: u32,
        pos: usize,
        k: &dyn Fn(usize) -> bool,
    ) -> bool {
        if !self.tick() {
            return false;
        }
        let more = || {
            max.is_none_or(|m| count < m)
                && self.seq(std::slice::from_ref(inner), pos, &|p| {
                    (p != pos || count < min) && self.repeat(inner, min, max, greedy, count + 1, p, k)
                })
        };
        if count < min {
            return more();
        }
        let (first, second): (&dyn Fn() -> bool, &dyn Fn() -> bool) =
            if greedy { (&more, &|| k(pos)) } else { (&|| k(pos), &more) };
        first() || second()
    }
}

impl Regex {
    pub(crate) fn new(pattern: &str) -> Result<Regex, Error> {
        let mut p = Parser { chars: pattern.chars().collect(), pos: 0, _src: pattern };
        let alts = p.alternation()?;
        if p.pos != p.chars.len() {
            return Err(syntax("unbalanced ')'"));
        }
        Ok(Regex { root: vec![Node::Group(alts)] })
    }

    /// The end of a match starting at `start`, longest-first by backtracking order.
    fn match_at(&self, m: &Matcher<'_>, start: usize, full: bool) -> Option<usize> {
        let end = Cell::new(None);
        let found = m.seq(&self.root, start, &|p| {
            if full && p != m.text.len() {
                return false;
            }
            end.set(Some(p));
            true
        });
        if found { end.get() } else { None }
    }

    fn checked<'t>(&self, chars: &'t [char]) -> Result<Matcher<'t>, Error> {
        if chars.len() > INPUT_LIMIT {
            return Err(Error::Semantic("string too long for a regular expression".into()));
        }
        Ok(Matcher { text: chars, steps: Cell::new(0) })
    }

    fn limit(m: &Matcher<'_>) -> Result<(), Error> {
        if m.steps.get() > STEP_LIMIT {
            Err(Error::Semantic("regular expression too expensive".into()))
        } else {
            Ok(())
        }
    }

    /// Does the pattern match somewhere in `s` (`full`: all of `s`)?
    pub(crate) fn is_match(&self, s: &str, full: bool) -> Result<bool, Error> {
        let chars: Vec<char> = s.chars().collect();
        let m = self.checked(&chars)?;
        let found = if full {
            self.match_at(&m, 0, true).is_some()
        } else {
            (0..=chars.len()).any(|i| self.match_at(&m, i, false).is_some())
        };
        Self::limit(&m)?;
        Ok(found)
    }

    /// Replace every non-overlapping match with `with`.
    pub(crate) fn replace_all(&self, s: &str, with: &str) -> Result<String, Error> {
        let chars: Vec<char> = s.chars().collect();
        let m = self.checked(&chars)?;
        let mut out = String::new();
        let mut i = 0;
        while i <= chars.len() {
            match self.match_at(&m, i, false) {
                Some(end) if end > i => {
                    out.push_str(with);
                    i = end;
                }
                Some(_) => {
                    out.push_str(with);
                    if let Some(c) = chars.get(i) {
                        out.push(*c);
                    }
                    i += 1;
                }
                None => {
                    if let Some(c) = chars.get(i) {
                        out.push(*c);
                    }
                    i += 1;
                }
            }
        }
        Self::limit(&m)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, s: &str) -> bool {
        Regex::new(p).unwrap().is_match(s, false).unwrap()
    }

    #[test]
    fn matching() {
        assert!(m("Library", "a/Library/b"));
        assert!(!m("^Library$", "a/Library/b"));
        assert!(m("A.*B", "A\n\tB"));
        assert!(m("^[A-Za-z0-9\\-\\.]{1,64}$", "abc-1.2"));
        assert!(!m("^[A-Za-z0-9\\-\\.]{1,64}$", "abc_1"));
        assert!(m("^(a|bc)+d?$", "abcabc"));
        assert!(m("^\\d{3}$", "123"));
        assert!(m("^[^\\s]+$", "abc"));
        assert!(!Regex::new("Library").unwrap().is_match("a/Library/b", true).unwrap());
        assert_eq!(Regex::new("[0-9]").unwrap().replace_all("abc123", "-").unwrap(), "abc---");
        assert_eq!(Regex::new("234").unwrap().replace_all("123456", "X").unwrap(), "1X56");
    }
}
