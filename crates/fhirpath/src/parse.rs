//! Tokenizer and precedence-climbing parser for FHIRPath expressions.

use crate::Error;

/// A parsed FHIRPath expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// The input collection (`$this`).
    This,
    /// A member name evaluated on the input (first step of a path).
    Ident(String),
    /// `expr.name`
    Member(Box<Expr>, String),
    /// `expr.func(args)`
    Call(Box<Expr>, String, Vec<Expr>),
    /// `expr[index]`
    Index(Box<Expr>, Box<Expr>),
    Str(String),
    Num(String),
    Bool(bool),
    /// `@2020-01-01`
    Date(String),
    /// `{}`
    Empty,
    /// `%resource`, `%context`, `%ucum`...
    Var(String),
    /// unary minus
    Neg(Box<Expr>),
    /// `a op b`: `| = != ~ !~ < > <= >= and or xor implies in contains + - * / & div mod`
    Binary(String, Box<Expr>, Box<Expr>),
    /// `expr is Type` / `expr as Type`
    Type(String, Box<Expr>, String),
    /// A quantity literal: value text and unit (a UCUM code, or a calendar keyword
    /// such as `days`).
    Quantity(String, String),
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(String),
    Date(String),
    Sym(&'static str),
}

fn tokenize(s: &str) -> Result<Vec<(usize, Tok)>, Error> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if s[i..].starts_with("//") {
            i = s[i..].find('\n').map_or(b.len(), |n| i + n);
            continue;
        }
        if s[i..].starts_with("/*") {
            match s[i + 2..].find("*/") {
                Some(n) => i += n + 4,
                None => return Err(Error::Syntax { pos: i, msg: "unterminated comment".into() }),
            }
            continue;
        }
        let start = i;
        if c == b'@' {
            // @YYYY[-MM[-DD]][T[hh[:mm[:ss[.fff]]]][Z|(+|-)hh:mm]] or @Thh[:mm...]
            i += 1;
            // a time literal has no time zone
            let time = b.get(i) == Some(&b'T');
            while i < b.len() {
                let ch = b[i];
                let digit_follows = b.get(i + 1).is_some_and(u8::is_ascii_digit);
                let ok = ch.is_ascii_digit()
                    || ch == b'T'
                    || (ch == b'Z' && !time)
                    || ch == b':'
                    || (ch == b'.' && digit_follows)
                    || (matches!(ch, b'-' | b'+') && digit_follows && !time);
                if !ok {
                    break;
                }
                i += 1;
            }
            out.push((start, Tok::Date(s[start + 1..i].to_string())));
        } else if c == b'%' && b.get(i + 1) == Some(&b'`') {
            // %`vs-name`: a delimited environment variable name
            i += 2;
            while i < b.len() && b[i] != b'`' {
                i += 1;
            }
            out.push((start, Tok::Ident(format!("%{}", &s[start + 2..i.min(b.len())]))));
            i += 1;
        } else if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c == b'%' {
            i += 1;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$') {
                i += 1;
            }
            out.push((start, Tok::Ident(s[start..i].to_string())));
        } else if c == b'`' {
            i += 1;
            while i < b.len() && b[i] != b'`' {
                i += 1;
            }
            out.push((start, Tok::Ident(s[start + 1..i.min(b.len())].to_string())));
            i += 1;
        } else if c.is_ascii_digit() {
            while i < b.len()
                && (b[i].is_ascii_digit() || (b[i] == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            out.push((start, Tok::Num(s[start..i].to_string())));
        } else if c == b'\'' {
            i += 1;
            let mut v = String::new();
            while i < b.len() && b[i] != b'\'' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                    let esc = match b[i] {
                        b'n' => Some('\n'),
                        b't' => Some('\t'),
                        b'r' => Some('\r'),
                        b'f' => Some('\u{c}'),
                        b'u' => {
                            let hex = s
                                .get(i + 1..i + 5)
                                .and_then(|h| u32::from_str_radix(h, 16).ok())
                                .and_then(char::from_u32);
                            if hex.is_some() {
                                i += 4;
                            }
                            hex
                        }
                        _ => None,
                    };
                    if let Some(e) = esc {
                        v.push(e);
                        i += 1;
                        continue;
                    }
                }
                let ch = s[i..].chars().next().unwrap_or('\0');
                v.push(ch);
                i += ch.len_utf8();
            }
            if i >= b.len() {
                return Err(Error::Syntax { pos: start, msg: "unterminated string".into() });
            }
            i += 1;
            out.push((start, Tok::Str(v)));
        } else {
            let two = s.get(i..i + 2).unwrap_or("");
            let sym: &'static str = match (two, c) {
                ("!=", _) => "!=",
                ("!~", _) => "!~",
                ("{}", _) => "{}",
                (_, b'+') => "+",
                (_, b'-') => "-",
                (_, b'*') => "*",
                (_, b'/') => "/",
                (_, b'&') => "&",
                (_, b'~') => "~",
                ("<=", _) => "<=",
                (">=", _) => ">=",
                (_, b'.') => ".",
                (_, b'(') => "(",
                (_, b')') => ")",
                (_, b'[') => "[",
                (_, b']') => "]",
                (_, b',') => ",",
                (_, b'|') => "|",
                (_, b'=') => "=",
                (_, b'<') => "<",
                (_, b'>') => ">",
                _ => {
                    return Err(Error::Syntax { pos: i, msg: format!("unexpected character '{}'", c as char) });
                }
            };
            i += sym.len();
            out.push((start, Tok::Sym(sym)));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<(usize, Tok)>,
    pos: usize,
    /// How deep the parser's own calls are now (bounded: [`MAX_NESTING`]).
    nesting: usize,
}

/// The most tokens an expression may have (the base SearchParameters' longest has ~150).
pub const MAX_TOKENS: usize = 4096;
/// The deepest an expression may nest (parentheses, arguments, operands, path steps):
/// parsing, evaluating and dropping it recurse that deep, on threads of 2 MiB stacks.
pub const MAX_NESTING: usize = 128;

/// Parse a FHIRPath expression. Expressions too long or nested too deeply are refused
/// (they come from stored resources and requests: none may exhaust the stack).
pub fn parse(s: &str) -> Result<Expr, Error> {
    let toks = tokenize(s)?;
    if toks.len() > MAX_TOKENS {
        return Err(Error::Syntax { pos: 0, msg: format!("the expression is too long (at most {MAX_TOKENS} tokens)") });
    }
    let mut p = Parser { toks, pos: 0, nesting: 0 };
    let e = p.expr(0)?;
    if let Some((at, t)) = p.toks.get(p.pos) {
        return Err(Error::Syntax { pos: *at, msg: format!("unexpected {t:?}") });
    }
    if depth(&e) > MAX_NESTING {
        return Err(Error::Syntax { pos: 0, msg: format!("the expression nests too deeply (at most {MAX_NESTING})") });
    }
    Ok(e)
}

/// The depth of an expression tree, counted without recursion.
fn depth(e: &Expr) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(e, 1usize)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        match e {
            Expr::Member(a, _) | Expr::Neg(a) | Expr::Type(_, a, _) => stack.push((a, d + 1)),
            Expr::Index(a, b) | Expr::Binary(_, a, b) => {
                stack.push((a, d + 1));
                stack.push((b, d + 1));
            }
            Expr::Call(a, _, args) => {
                stack.push((a, d + 1));
                stack.extend(args.iter().map(|x| (x, d + 1)));
            }
            _ => {}
        }
    }
    deepest
}

/// Binary operator precedence (higher binds tighter), as in the FHIRPath grammar.
fn binary_prec(t: &Tok) -> Option<(u8, String)> {
    let word = |w: &str| -> Option<u8> {
        Some(match w {
            "implies" => 1,
            "or" | "xor" => 2,
            "and" => 3,
            "in" | "contains" => 4,
            "is" | "as" => 8,
            "div" | "mod" => 10,
            _ => return None,
        })
    };
    Some(match t {
        Tok::Ident(w) => (word(w)?, w.clone()),
        Tok::Sym(s @ ("=" | "!=" | "~" | "!~")) => (5, (*s).into()),
        Tok::Sym(s @ ("<" | ">" | "<=" | ">=")) => (6, (*s).into()),
        Tok::Sym("|") => (7, "|".into()),
        Tok::Sym(s @ ("+" | "-" | "&")) => (9, (*s).into()),
        Tok::Sym(s @ ("*" | "/")) => (10, (*s).into()),
        _ => return None,
    })
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(_, t)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(p, _)| *p).unwrap_or(usize::MAX)
    }

    fn expect(&mut self, sym: &str) -> Result<(), Error> {
        match self.peek() {
            Some(Tok::Sym(s)) if *s == sym => {
                self.pos += 1;
                Ok(())
            }
            other => Err(Error::Syntax { pos: self.at(), msg: format!("expected '{sym}', found {other:?}") }),
        }
    }

    /// Count one level of the parser's recursion; refused past [`MAX_NESTING`].
    fn deeper(&mut self) -> Result<(), Error> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(Error::Syntax {
                pos: self.at(),
                msg: format!("the expression nests too deeply (at most {MAX_NESTING})"),
            });
        }
        Ok(())
    }

    fn expr(&mut self, min_prec: u8) -> Result<Expr, Error> {
        self.deeper()?;
        let e = self.binary(min_prec);
        self.nesting -= 1;
        e
    }

    fn binary(&mut self, min_prec: u8) -> Result<Expr, Error> {
        let mut lhs = self.postfix()?;
        while let Some((prec, op)) = self.peek().and_then(binary_prec) {
            if prec < min_prec {
                break;
            }
            self.pos += 1;
            if op == "is" || op == "as" {
                let ty = self.type_name()?;
                lhs = Expr::Type(op, Box::new(lhs), ty);
                continue;
            }
            let rhs = self.expr(prec + 1)?;
            lhs = Expr::Binary(op, Box::new(lhs), Box::new(rhs));
        }
        Ok(lhs)
    }

    fn type_name(&mut self) -> Result<String, Error> {
        match self.toks.get(self.pos).map(|(_, t)| t.clone()) {
            Some(Tok::Ident(mut n)) => {
                self.pos += 1;
                // qualified names: FHIR.Patient, System.String (kept qualified)
                while self.peek() == Some(&Tok::Sym(".")) {
                    if let Some(Tok::Ident(next)) = self.toks.get(self.pos + 1).map(|(_, t)| t.clone()) {
                        self.pos += 2;
                        n = format!("{n}.{next}");
                    } else {
                        break;
                    }
                }
                Ok(n)
            }
            other => Err(Error::Syntax { pos: self.at(), msg: format!("expected a type name, found {other:?}") }),
        }
    }

    fn postfix(&mut self) -> Result<Expr, Error> {
        self.deeper()?;
        let e = self.steps();
        self.nesting -= 1;
        e
    }

    fn steps(&mut self) -> Result<Expr, Error> {
        let mut e = self.term()?;
        loop {
            match self.peek() {
                Some(Tok::Sym(".")) => {
                    self.pos += 1;
                    let name = match self.toks.get(self.pos).map(|(_, t)| t.clone()) {
                        Some(Tok::Ident(n)) => n,
                        other => {
                            return Err(Error::Syntax {
                                pos: self.at(),
                                msg: format!("expected a name after '.', found {other:?}"),
                            });
                        }
                    };
                    self.pos += 1;
                    if self.peek() == Some(&Tok::Sym("(")) {
                        let args = self.args(&name)?;
                        e = Expr::Call(Box::new(e), name, args);
                    } else {
                        e = Expr::Member(Box::new(e), name);
                    }
                }
                Some(Tok::Sym("[")) => {
                    self.pos += 1;
                    let idx = self.expr(0)?;
                    self.expect("]")?;
                    e = Expr::Index(Box::new(e), Box::new(idx));
                }
                _ => return Ok(e),
            }
        }
    }

    fn args(&mut self, func: &str) -> Result<Vec<Expr>, Error> {
        self.expect("(")?;
        let mut args = Vec::new();
        if self.peek() == Some(&Tok::Sym(")")) {
            self.pos += 1;
            return Ok(args);
        }
        loop {
            if matches!(func, "ofType" | "as" | "is") {
                args.push(Expr::Ident(self.type_name()?));
            } else {
                args.push(self.expr(0)?);
            }
            match self.peek() {
                Some(Tok::Sym(",")) => self.pos += 1,
                _ => break,
            }
        }
        self.expect(")")?;
        Ok(args)
    }

    fn term(&mut self) -> Result<Expr, Error> {
        let at = self.at();
        let Some(t) = self.toks.get(self.pos).map(|(_, t)| t.clone()) else {
            return Err(Error::Syntax { pos: at, msg: "unexpected end of expression".into() });
        };
        self.pos += 1;
        match t {
            Tok::Sym("(") => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Tok::Str(s) => Ok(Expr::Str(s)),
            Tok::Num(n) => match self.peek() {
                Some(Tok::Str(u)) => {
                    let u = u.clone();
                    self.pos += 1;
                    Ok(Expr::Quantity(n, u))
                }
                Some(Tok::Ident(w)) if crate::quantity::is_calendar_word(w) => {
                    let w = w.clone();
                    self.pos += 1;
                    Ok(Expr::Quantity(n, w))
                }
                _ => Ok(Expr::Num(n)),
            },
            Tok::Date(d) => Ok(Expr::Date(d)),
            Tok::Sym("{}") => Ok(Expr::Empty),
            Tok::Sym("-") => Ok(Expr::Neg(Box::new(self.postfix()?))),
            Tok::Sym("+") => self.postfix(),
            Tok::Ident(w) if w.starts_with('%') => Ok(Expr::Var(w[1..].to_string())),
            Tok::Ident(w) if w == "true" || w == "false" => Ok(Expr::Bool(w == "true")),
            Tok::Ident(w) if w == "$this" => Ok(Expr::This),
            Tok::Ident(w) if w == "$index" || w == "$total" => Ok(Expr::Var(w)),
            Tok::Ident(w) => {
                if self.peek() == Some(&Tok::Sym("(")) {
                    let args = self.args(&w)?;
                    Ok(Expr::Call(Box::new(Expr::This), w, args))
                } else {
                    Ok(Expr::Ident(w))
                }
            }
            other => Err(Error::Syntax { pos: at, msg: format!("unexpected {other:?}") }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_base_search_parameter_expression() {
        let mut failed = Vec::new();
        for p in fhir_spec::spec().search_params() {
            if let Some(x) = &p.expression
                && let Err(e) = parse(x)
            {
                failed.push(format!("{}: {x}: {e}", p.id));
            }
        }
        assert!(failed.is_empty(), "{failed:#?}");
    }

    #[test]
    fn precedence() {
        let e = parse("Observation.value as Quantity | Observation.value as SampledData").unwrap();
        assert!(matches!(e, Expr::Binary(op, _, _) if op == "|"));
    }
}
