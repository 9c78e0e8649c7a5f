//! Parsing the NumPy-style expressions of `rdask-jobqueue array EXPR`, e.g.
//! `(x + x.T) - x.mean(axis=0)`, into a [`Node`] tree. Meaning (names, dtypes, shapes) is the
//! caller's business; this module only knows syntax.
//!
//! The grammar is the part of Python's expression grammar that array code uses, with Python's
//! precedence, so an expression copied from a notebook means the same thing here:
//!
//! ```text
//! expr    := bitor (('==' | '!=' | '<' | '<=' | '>' | '>=') bitor)?   no chains: a < b < c
//! bitor   := bitxor ('|' bitxor)*
//! bitxor  := bitand ('^' bitand)*
//! bitand  := sum ('&' sum)*
//! sum     := product (('+' | '-') product)*
//! product := unary (('*' | '/' | '//' | '%' | '@') unary)*
//! unary   := ('-' | '+' | '~') unary | power
//! power   := postfix ('**' unary)?          so -x**2 is -(x**2), and 2**-1 parses
//! postfix := atom ('.' NAME | '(' args ')' | '[' items ']')*
//! atom    := NUMBER | STRING | NAME | '(' ... ')' | '[' ... ']'
//! ```
//!
//! Nodes and errors carry byte [`Span`]s so that errors can be shown with a caret
//! ([`render_error`]). The lexer runs ahead but stops at its first error, which the parser
//! reports only when it reaches that token: errors always come out in source order.

use std::fmt;

/// A byte range in the source text, for error carets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

impl Span {
    fn to(self, other: Span) -> Span {
        let (start, end) = (self.start, other.end);
        Span { start, end }
    }
}

/// A parsed expression and the source text it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: Kind,
    pub span: Span,
}

/// The binary operators: the arithmetic, bitwise and comparison ones NumPy arrays support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    MatMul,
    BitAnd,
    BitOr,
    BitXor,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl BinOp {
    /// The operator as written, for messages.
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::FloorDiv => "//",
            BinOp::Mod => "%",
            BinOp::Pow => "**",
            BinOp::MatMul => "@",
            BinOp::BitAnd => "&",
            BinOp::BitOr => "|",
            BinOp::BitXor => "^",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// `3`, `1_000`.
    Int(i64),
    /// `1.5`, `.5`, `1e3`, `2.5E-3`, `1.`.
    Float(f64),
    /// `'f4'` or `"float32"`.
    Str(String),
    Name(String),
    /// `(1, 2)`, `(1,)`, `()`. A parenthesised expression `(x)` is just `x` (with the span
    /// of the parens).
    Tuple(Vec<Node>),
    /// A list literal `[1, 2]`: a tuple everywhere (shapes and chunks read the same either
    /// way) except inside an index, where `x[[1, 5]]` picks positions and `x[(1, 5)]` is
    /// `x[1, 5]`, as in Python.
    List(Vec<Node>),
    Neg(Box<Node>),
    Pos(Box<Node>),
    /// `~x`.
    Invert(Box<Node>),
    /// `span` covers both operands; `op_span` is the operator, for errors such as mismatched
    /// shapes that are about the operation rather than the operands.
    Binary {
        op: BinOp,
        op_span: Span,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Attribute {
        value: Box<Node>,
        name: String,
    },
    Call {
        func: Box<Node>,
        args: Vec<Node>,
        kwargs: Vec<(String, Node)>,
    },
    Index {
        value: Box<Node>,
        items: Vec<IndexItem>,
    },
}

/// One comma-separated part of `x[...]`.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexItem {
    Single(Node),
    Slice {
        start: Option<Node>,
        stop: Option<Node>,
        step: Option<Node>,
    },
    Ellipsis,
}

/// Why an expression does not parse, and where.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub message: String,
    pub span: Span,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

const OPERATORS: &str = "operators are + - * / // % ** @ & | ^ ~ == != < <= > >=";
/// Deeper trees are refused rather than risk overflowing the stack wherever the tree is later
/// walked or dropped (recursively). Long operator chains count, since `a + b + c + ...` builds
/// a tree as deep as it is long.
const MAX_DEPTH: usize = 256;
/// Brackets cost the parser far more stack per level than operators (about 10 KiB in a debug
/// build, against 2 MiB for a test thread), so they have their own, lower limit.
const MAX_NESTING: usize = 64;

/// Parses one expression; the whole input must be used.
pub fn parse(src: &str) -> Result<Node, ParseError> {
    let end = src.len();
    if src.trim().is_empty() {
        return fail("empty expression", Span { start: 0, end });
    }
    let toks = lex(src);
    let mut p = Parser {
        src,
        toks,
        pos: 0,
        depth: 0,
        nesting: 0,
    };
    let node = p.expr()?;
    let found = p.found();
    match p.tok() {
        Tok::End => Ok(node),
        Tok::Op(c @ (")" | "]")) => Err(p.here(format!("unmatched '{c}'"))),
        _ => Err(p.here(format!(
            "unexpected {found} after the end of the expression"
        ))),
    }
}

/// Renders an error for a terminal: the message (verbatim: add any "syntax error: " prefix
/// yourself), the source line holding `span.start`, and a caret line with `^` under
/// `span.start` and `~` continuing to `span.end` (within that line). Tabs in the source are
/// copied into the caret line so the caret stays aligned. Any span is accepted.
pub fn render_error(src: &str, span: Span, message: &str) -> String {
    let floor = |i: usize| (0..=i.min(src.len())).rfind(|&i| src.is_char_boundary(i));
    let start = floor(span.start).unwrap_or(0);
    let end = floor(span.end).unwrap_or(0).max(start);
    let line_start = src[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_end = src[start..].find('\n').map_or(src.len(), |i| start + i);
    let line = src[line_start..line_end].trim_end_matches('\r');
    let blank = |c: char| if c == '\t' { c } else { ' ' };
    let pad: String = src[line_start..start].chars().map(blank).collect();
    let width = src[start..end.min(line_end)].chars().count().max(1);
    format!("{message}\n  {line}\n  {pad}^{}", "~".repeat(width - 1))
}

/// The 1-based column of byte `at` within its line, in characters, for messages.
fn column(src: &str, at: usize) -> usize {
    let before = src.get(..at).unwrap_or(src);
    before.rsplit('\n').next().unwrap_or(before).chars().count() + 1
}

fn fail<T>(message: impl Into<String>, span: Span) -> Result<T, ParseError> {
    let message = message.into();
    Err(ParseError { message, span })
}

fn binary(op: BinOp, op_span: Span, lhs: Node, rhs: Node) -> Node {
    let span = lhs.span.to(rhs.span);
    let (lhs, rhs) = (Box::new(lhs), Box::new(rhs));
    let kind = Kind::Binary {
        op,
        op_span,
        lhs,
        rhs,
    };
    Node { kind, span }
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Int(i64),
    Float(f64),
    Str(String),
    Name(String),
    Op(&'static str),
    Ellipsis,
    End,
    /// The lexer's first error; it ends the token list like `End` does.
    Bad(ParseError),
}

/// Longest first, so `**` is not read as two `*`.
const PUNCT: [&str; 27] = [
    "...", "**", "//", "==", "!=", "<=", ">=", "(", ")", "[", "]", ",", ":", ".", "=", "+", "-",
    "*", "/", "@", "%", "&", "|", "^", "~", "<", ">",
];
/// Python operators we do not implement, recognised so the error can name them (before
/// PUNCT, so `<<` is not read as `<`).
const UNSUPPORTED: [&str; 7] = ["<<", ">>", "and", "or", "not", "in", "is"];

/// Splits `src` into tokens, ending with `End` (placed after the last non-blank character, so
/// its caret never lands on an empty trailing line) or with the first error, as `Bad`.
fn lex(src: &str) -> Vec<(Tok, Span)> {
    let mut toks = Vec::new();
    let mut i = 0;
    while let Some(c) = src[i..].chars().next() {
        if c.is_whitespace() {
            i += c.len_utf8();
            continue;
        }
        let (tok, end) = match token(src, i, c) {
            Ok((tok, len)) => (tok, i + len),
            Err((message, len)) => {
                let span = Span {
                    start: i,
                    end: i + len,
                };
                (Tok::Bad(ParseError { message, span }), span.end)
            }
        };
        let bad = matches!(tok, Tok::Bad(_));
        toks.push((tok, Span { start: i, end }));
        if bad {
            return toks;
        }
        i = end;
    }
    let end = src.trim_end().len();
    toks.push((Tok::End, Span { start: end, end }));
    toks
}

/// Characters an identifier, or a bad suffix glued to a number, is made of.
fn word_len(s: &str) -> usize {
    s.find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len())
}

/// The token starting with `c` at byte `at` and its length; or a message and the length of the
/// text it is about.
fn token(src: &str, at: usize, c: char) -> Result<(Tok, usize), (String, usize)> {
    let rest = &src[at..];
    let word = &rest[..word_len(rest)];
    let named = |op: &&str| rest.starts_with(op) && (!c.is_alphabetic() || word == *op);
    if let Some(op) = UNSUPPORTED.into_iter().find(named) {
        Err((format!("'{op}' is not supported; {OPERATORS}"), op.len()))
    } else if c.is_ascii_digit()
        || (c == '.' && rest[1..].starts_with(|d: char| d.is_ascii_digit()))
    {
        number(rest)
    } else if c == '\'' || c == '"' {
        string(src, at, c)
    } else if c.is_alphabetic() || c == '_' {
        Ok((Tok::Name(word.to_string()), word.len()))
    } else {
        match PUNCT.into_iter().find(|op| rest.starts_with(op)) {
            Some("...") => Ok((Tok::Ellipsis, 3)),
            Some(op) => Ok((Tok::Op(op), op.len())),
            None => Err((format!("unexpected character {c:?}"), c.len_utf8())),
        }
    }
}

/// A number at the start of `s` (a digit, or a '.' before a digit), by Python's rules.
fn number(s: &str) -> Result<(Tok, usize), (String, usize)> {
    let b = s.as_bytes();
    let digit = |i: usize| b.get(i).is_some_and(u8::is_ascii_digit);
    // Underscores only between digits, as in Python: 1_000_000.
    let digits = |mut i: usize| {
        while digit(i) || (b.get(i) == Some(&b'_') && i > 0 && digit(i - 1) && digit(i + 1)) {
            i += 1;
        }
        i
    };
    let mut i = digits(0);
    let dot = b.get(i) == Some(&b'.');
    if dot {
        i = digits(i + 1);
    }
    let sign = usize::from(matches!(b.get(i + 1), Some(b'+' | b'-')));
    let exponent = matches!(b.get(i), Some(b'e' | b'E')) && digit(i + 1 + sign);
    if exponent {
        i = digits(i + 1 + sign);
    }
    // Letters glued on (2j, 0x1f, 1e, 1_) are typos or literals we do not support.
    let end = i + word_len(&s[i..]);
    if end > i {
        return Err((format!("invalid number literal '{}'", &s[..end]), end));
    }
    let text: String = s[..i].chars().filter(|&c| c != '_').collect();
    if dot || exponent {
        let invalid = |_| (format!("invalid number literal '{text}'"), i);
        return text.parse().map(|v| (Tok::Float(v), i)).map_err(invalid);
    }
    let too_large = |_| {
        let message = format!("integer literal {text} is too large for a 64-bit integer");
        (format!("{message}; write {text}.0 for a float"), i)
    };
    text.parse().map(|v| (Tok::Int(v), i)).map_err(too_large)
}

/// A string starting with `quote` at byte `at`; understands the common backslash escapes.
fn string(src: &str, at: usize, quote: char) -> Result<(Tok, usize), (String, usize)> {
    let mut out = String::new();
    let mut chars = src[at..].char_indices().skip(1);
    while let Some((k, c)) = chars.next() {
        match c {
            _ if c == quote => return Ok((Tok::Str(out), k + 1)),
            '\\' => match chars.next() {
                Some((_, 'n')) => out.push('\n'),
                Some((_, 't')) => out.push('\t'),
                Some((_, e @ ('\\' | '\'' | '"'))) => out.push(e),
                Some((_, e)) => out.extend(['\\', e]),
                None => break,
            },
            _ => out.push(c),
        }
    }
    let message = format!("unterminated string starting at column {}", column(src, at));
    Err((message, src.len() - at))
}

type PResult<T> = Result<T, ParseError>;

struct Parser<'s> {
    src: &'s str,
    /// Never empty: ends with `End` or `Bad`, and `pos` never moves past that last token.
    toks: Vec<(Tok, Span)>,
    pos: usize,
    /// How deep the tree being built is at this point; see [`MAX_DEPTH`].
    depth: usize,
    /// How many brackets are open; see [`MAX_NESTING`].
    nesting: usize,
}

impl Parser<'_> {
    fn tok(&self) -> &Tok {
        &self.toks[self.pos].0
    }

    fn span(&self) -> Span {
        self.toks[self.pos].1
    }

    fn at(&self, op: &str) -> bool {
        matches!(self.tok(), Tok::Op(o) if *o == op)
    }

    fn at_end(&self) -> bool {
        matches!(self.tok(), Tok::End)
    }

    fn bump(&mut self) -> Span {
        let span = self.span();
        self.pos = (self.pos + 1).min(self.toks.len() - 1);
        span
    }

    fn eat(&mut self, op: &str) -> Option<Span> {
        self.at(op).then(|| self.bump())
    }

    /// An error at the current token; if the lexer failed there, its error wins.
    fn here(&self, message: String) -> ParseError {
        let span = self.span();
        match self.tok() {
            Tok::Bad(e) => e.clone(),
            _ => ParseError { message, span },
        }
    }

    fn found(&self) -> String {
        let Span { start, end } = self.span();
        format!("'{}'", self.src.get(start..end).unwrap_or(""))
    }

    fn expected(&self, what: &str) -> ParseError {
        if self.at_end() {
            self.here(format!("unexpected end of input; expected {what}"))
        } else {
            self.here(format!("expected {what}, found {}", self.found()))
        }
    }

    fn deeper(&mut self) -> PResult<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            let message = format!("expression is nested too deeply (more than {MAX_DEPTH} levels)");
            return Err(self.here(message));
        }
        Ok(())
    }

    /// A comparison, not chained: Python would read `a < b < c` as `(a < b) and (b < c)`,
    /// which arrays refuse ("the truth value of an array is ambiguous").
    fn expr(&mut self) -> PResult<Node> {
        let ops = [
            ("==", BinOp::Eq),
            ("!=", BinOp::Ne),
            ("<=", BinOp::Le),
            (">=", BinOp::Ge),
            ("<", BinOp::Lt),
            (">", BinOp::Gt),
        ];
        let lhs = self.bitor()?;
        let Some(&(_, op)) = ops.iter().find(|(s, _)| self.at(s)) else {
            return Ok(lhs);
        };
        let op_span = self.bump();
        self.deeper()?;
        let rhs = self.bitor()?;
        self.depth -= 1;
        if ops.iter().any(|(s, _)| self.at(s)) {
            return Err(self.here(
                "chained comparisons like a < b < c are not supported (NumPy arrays refuse \
                 them too); write (a < b) & (b < c)"
                    .into(),
            ));
        }
        Ok(binary(op, op_span, lhs, rhs))
    }

    fn bitor(&mut self) -> PResult<Node> {
        self.binary(&[("|", BinOp::BitOr)], Self::bitxor)
    }

    fn bitxor(&mut self) -> PResult<Node> {
        self.binary(&[("^", BinOp::BitXor)], Self::bitand)
    }

    fn bitand(&mut self) -> PResult<Node> {
        self.binary(&[("&", BinOp::BitAnd)], Self::sum)
    }

    fn sum(&mut self) -> PResult<Node> {
        self.binary(&[("+", BinOp::Add), ("-", BinOp::Sub)], Self::product)
    }

    fn product(&mut self) -> PResult<Node> {
        let ops = [
            ("*", BinOp::Mul),
            ("//", BinOp::FloorDiv),
            ("/", BinOp::Div),
            ("%", BinOp::Mod),
            ("@", BinOp::MatMul),
        ];
        self.binary(&ops, Self::unary)
    }

    /// One left-associative precedence level.
    fn binary(
        &mut self,
        ops: &[(&str, BinOp)],
        operand: fn(&mut Self) -> PResult<Node>,
    ) -> PResult<Node> {
        let depth = self.depth;
        let mut lhs = operand(self)?;
        while let Some(&(_, op)) = ops.iter().find(|(s, _)| self.at(s)) {
            let op_span = self.bump();
            self.deeper()?;
            lhs = binary(op, op_span, lhs, operand(self)?);
        }
        self.depth = depth;
        Ok(lhs)
    }

    fn unary(&mut self) -> PResult<Node> {
        let make: fn(Box<Node>) -> Kind = if self.at("-") {
            Kind::Neg
        } else if self.at("~") {
            Kind::Invert
        } else {
            Kind::Pos
        };
        let Some(op_span) = self
            .eat("-")
            .or_else(|| self.eat("+"))
            .or_else(|| self.eat("~"))
        else {
            return self.power();
        };
        self.deeper()?;
        let operand = self.unary()?;
        self.depth -= 1;
        let span = op_span.to(operand.span);
        let kind = make(Box::new(operand));
        Ok(Node { kind, span })
    }

    /// The exponent is a `unary`, which makes `**` right-associative and allows `2 ** -1`,
    /// while the base is a `postfix`, which makes `-x ** 2` mean `-(x ** 2)`.
    fn power(&mut self) -> PResult<Node> {
        let base = self.postfix()?;
        let Some(op_span) = self.eat("**") else {
            return Ok(base);
        };
        self.deeper()?;
        let exponent = self.unary()?;
        self.depth -= 1;
        Ok(binary(BinOp::Pow, op_span, base, exponent))
    }

    fn postfix(&mut self) -> PResult<Node> {
        let depth = self.depth;
        let mut node = self.atom()?;
        while let Tok::Op(op @ ("." | "(" | "[")) = *self.tok() {
            self.deeper()?;
            let open = self.bump();
            let start = node.span;
            let value = Box::new(node);
            let (kind, end) = match op {
                "." => self.attribute(value)?,
                "(" => self.call(value, open)?,
                _ => self.index(value, open)?,
            };
            let span = start.to(end);
            node = Node { kind, span };
        }
        self.depth = depth;
        Ok(node)
    }

    fn attribute(&mut self, value: Box<Node>) -> PResult<(Kind, Span)> {
        let Tok::Name(name) = self.tok() else {
            return Err(self.expected("a name after '.'"));
        };
        let name = name.clone();
        Ok((Kind::Attribute { value, name }, self.bump()))
    }

    fn call(&mut self, func: Box<Node>, open: Span) -> PResult<(Kind, Span)> {
        let (mut args, mut kwargs) = (Vec::new(), Vec::<(String, Node)>::new());
        let (_, _, close) = self.seq(open, ")", |p| {
            let arg = p.expr()?;
            if p.eat("=").is_none() {
                if !kwargs.is_empty() {
                    return fail("positional argument follows keyword argument", arg.span);
                }
                args.push(arg);
            } else if let Kind::Name(name) = arg.kind {
                if kwargs.iter().any(|(k, _)| *k == name) {
                    return fail(format!("keyword argument '{name}' given twice"), arg.span);
                }
                kwargs.push((name, p.expr()?));
            } else {
                let message = "keyword argument names must be plain names, like axis=0";
                return fail(message, arg.span);
            }
            Ok(())
        })?;
        Ok((Kind::Call { func, args, kwargs }, close))
    }

    fn index(&mut self, value: Box<Node>, open: Span) -> PResult<(Kind, Span)> {
        let (items, _, close) = self.seq(open, "]", Self::index_item)?;
        if items.is_empty() {
            return fail("an index needs at least one item, like x[0] or x[:]", close);
        }
        Ok((Kind::Index { value, items }, close))
    }

    fn index_item(&mut self) -> PResult<IndexItem> {
        if matches!(self.tok(), Tok::Ellipsis) {
            self.bump();
            return Ok(IndexItem::Ellipsis);
        }
        let start = self.slice_part()?;
        if self.eat(":").is_none() {
            let single = start.map(IndexItem::Single);
            return single.ok_or_else(|| self.expected("an index"));
        }
        let stop = self.slice_part()?;
        let step = self
            .eat(":")
            .map(|_| self.slice_part())
            .transpose()?
            .flatten();
        Ok(IndexItem::Slice { start, stop, step })
    }

    /// An optional part of a slice: absent when the next token ends it.
    fn slice_part(&mut self) -> PResult<Option<Node>> {
        if self.at(":") || self.at(",") || self.at("]") || self.at_end() {
            return Ok(None);
        }
        self.expr().map(Some)
    }

    fn atom(&mut self) -> PResult<Node> {
        let span = self.span();
        let kind = match self.tok() {
            Tok::Int(v) => Kind::Int(*v),
            Tok::Float(v) => Kind::Float(*v),
            Tok::Str(s) => Kind::Str(s.clone()),
            Tok::Name(s) => Kind::Name(s.clone()),
            Tok::Op("(" | "[") => return self.group(),
            Tok::Ellipsis => {
                return fail(
                    "'...' can only be used inside an index, like x[..., 0]",
                    span,
                )
            }
            _ => return Err(self.expected("an expression")),
        };
        self.bump();
        Ok(Node { kind, span })
    }

    /// `(x)` is `x` with its span widened to the parens, so carets cover what was written;
    /// `()`, `(x,)`, `(x, y)` are tuples and any `[...]` a list.
    fn group(&mut self) -> PResult<Node> {
        let list = self.at("[");
        let open = self.bump();
        self.deeper()?;
        let (mut items, comma, close) = self.seq(open, if list { "]" } else { ")" }, Self::expr)?;
        self.depth -= 1;
        let span = open.to(close);
        if !list && !comma && items.len() == 1 {
            let inner = items.remove(0);
            return Ok(Node { span, ..inner });
        }
        let kind = if list {
            Kind::List(items)
        } else {
            Kind::Tuple(items)
        };
        Ok(Node { kind, span })
    }

    /// Comma-separated items up to `close`, a trailing comma allowed; also says whether there
    /// was any comma, which is what makes `(x,)` a tuple and `(x)` not.
    fn seq<T>(
        &mut self,
        open: Span,
        close: &str,
        mut item: impl FnMut(&mut Self) -> PResult<T>,
    ) -> PResult<(Vec<T>, bool, Span)> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return fail(
                format!("brackets are nested too deeply (more than {MAX_NESTING} levels)"),
                open,
            );
        }
        let (mut items, mut comma) = (Vec::new(), false);
        while !self.at(close) && !self.at_end() {
            items.push(item(self)?);
            if self.eat(",").is_none() {
                break;
            }
            comma = true;
        }
        if let Some(end) = self.eat(close) {
            self.nesting -= 1;
            return Ok((items, comma, end));
        }
        let opener = self.src.get(open.start..open.end).unwrap_or("");
        let opener = format!("the '{opener}' at column {}", column(self.src, open.start));
        let found = self.found();
        Err(if self.at_end() {
            self.here(format!("expected '{close}' to close {opener}"))
        } else {
            self.here(format!(
                "expected ',' or '{close}' to close {opener}, found {found}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// S-expressions keep the expected trees readable: `(- (+ x (. x T)) (call (. x mean) axis=0))`.
    fn sexp(n: &Node) -> String {
        let opt = |n: &Option<Node>| n.as_ref().map_or("_".into(), sexp);
        let (head, parts): (&str, Vec<String>) = match &n.kind {
            Kind::Int(v) => return v.to_string(),
            Kind::Float(v) => return format!("{v:?}"),
            Kind::Str(s) => return format!("'{s}'"),
            Kind::Name(s) => return s.clone(),
            Kind::Tuple(items) => ("tuple", items.iter().map(sexp).collect()),
            Kind::List(items) => ("list", items.iter().map(sexp).collect()),
            Kind::Neg(x) => ("neg", vec![sexp(x)]),
            Kind::Pos(x) => ("pos", vec![sexp(x)]),
            Kind::Invert(x) => ("~", vec![sexp(x)]),
            Kind::Binary { op, lhs, rhs, .. } => (op.symbol(), vec![sexp(lhs), sexp(rhs)]),
            Kind::Attribute { value, name } => (".", vec![sexp(value), name.clone()]),
            Kind::Call { func, args, kwargs } => {
                let kwargs = kwargs.iter().map(|(k, v)| format!("{k}={}", sexp(v)));
                let args = args.iter().map(sexp).chain(kwargs);
                ("call", std::iter::once(sexp(func)).chain(args).collect())
            }
            Kind::Index { value, items } => {
                let items = items.iter().map(|item| match item {
                    IndexItem::Single(n) => sexp(n),
                    IndexItem::Ellipsis => "...".into(),
                    IndexItem::Slice { start, stop, step } => {
                        format!("(: {} {} {})", opt(start), opt(stop), opt(step))
                    }
                });
                ("index", std::iter::once(sexp(value)).chain(items).collect())
            }
        };
        format!(
            "({head}{})",
            parts.iter().map(|p| format!(" {p}")).collect::<String>()
        )
    }

    fn check(cases: &[(&str, &str)]) {
        for (src, want) in cases {
            match parse(src) {
                Ok(node) => assert_eq!(sexp(&node), *want, "parsing {src:?}"),
                Err(e) => panic!("{src:?} failed:\n{}", render_error(src, e.span, &e.message)),
            }
        }
    }

    #[test]
    fn precedence_and_associativity() {
        check(&[
            ("a - b - c", "(- (- a b) c)"),
            ("a / b / c", "(/ (/ a b) c)"),
            ("2 ** 3 ** 2", "(** 2 (** 3 2))"),
            ("-x ** 2", "(neg (** x 2))"),
            ("x @ y * 2", "(* (@ x y) 2)"),
            ("x * y @ z", "(@ (* x y) z)"),
            ("a + b * c", "(+ a (* b c))"),
            ("a * b - c", "(- (* a b) c)"),
            ("a ** b * c", "(* (** a b) c)"),
            ("2 ** -1", "(** 2 (neg 1))"),
            ("-2 ** -2 ** 2", "(neg (** 2 (neg (** 2 2))))"),
            ("--x", "(neg (neg x))"),
            ("+x - -y", "(- (pos x) (neg y))"),
            ("-a * b", "(* (neg a) b)"),
            ("2 * -x", "(* 2 (neg x))"),
            ("-x.T ** 2", "(neg (** (. x T) 2))"),
            ("(a + b) * c", "(* (+ a b) c)"),
            ("x.a.b(1)[0].c", "(. (index (call (. (. x a) b) 1) 0) c)"),
        ]);
    }

    /// Python's precedence: comparisons below `|`, below `^`, below `&`, below `+ -`, below
    /// `* / // % @`, below unary `- + ~`, below `**`.
    #[test]
    fn comparison_and_bitwise_precedence_is_pythons() {
        check(&[
            ("x > 0 & y", "(> x (& 0 y))"),
            ("(x > 0) & (y < 1)", "(& (> x 0) (< y 1))"),
            ("a | b ^ c & d", "(| a (^ b (& c d)))"),
            ("a & b + c", "(& a (+ b c))"),
            ("a == b | c", "(== a (| b c))"),
            ("x // 2 % 3", "(% (// x 2) 3)"),
            ("-x // 2", "(// (neg x) 2)"),
            ("a + b % c", "(+ a (% b c))"),
            ("~x & y", "(& (~ x) y)"),
            ("~x ** 2", "(~ (** x 2))"),
            ("~~x", "(~ (~ x))"),
            ("x != 1", "(!= x 1)"),
            ("x <= 1", "(<= x 1)"),
            ("x >= 1", "(>= x 1)"),
            ("f(a=x == 1)", "(call f a=(== x 1))"),
            ("x[x > 0:]", "(index x (: (> x 0) _ _))"),
        ]);
    }

    #[test]
    fn command_line_examples() {
        check(&[
            ("x.mean(axis=0)", "(call (. x mean) axis=0)"),
            ("x.sum()", "(call (. x sum))"),
            (
                "(x + x.T) - x.mean(axis=0)",
                "(- (+ x (. x T)) (call (. x mean) axis=0))",
            ),
            ("x.dot(x.T + 1)", "(call (. x dot) (+ (. x T) 1))"),
            ("mean(x, axis=1)", "(call mean x axis=1)"),
            (
                "random((20000, 20000), chunks=(1000, 1000), seed=1).std()",
                "(call (. (call random (tuple 20000 20000) chunks=(tuple 1000 1000) seed=1) std))",
            ),
            (
                "ones((100000,), chunks=(1,)).sum()",
                "(call (. (call ones (tuple 100000) chunks=(tuple 1)) sum))",
            ),
            ("x[10:20, ::2]", "(index x (: 10 20 _) (: _ _ 2))"),
            ("x[..., 0]", "(index x ... 0)"),
            ("sqrt(abs(x)) ** 0.5", "(** (call sqrt (call abs x)) 0.5)"),
            ("x.astype('f4')", "(call (. x astype) 'f4')"),
            ("np.exp(-x)", "(call (. np exp) (neg x))"),
            ("x @ y", "(@ x y)"),
            ("arange(10)", "(call arange 10)"),
            ("1e-3 * x", "(* 0.001 x)"),
        ]);
    }

    #[test]
    fn atoms_tuples_calls_and_indexes() {
        check(&[
            ("1_000", "1000"),
            ("1.5", "1.5"),
            (".5", "0.5"),
            ("1e3", "1000.0"),
            ("2.5E-3", "0.0025"),
            ("1.", "1.0"),
            ("1_0.2_5e+1_0", "102500000000.0"),
            ("99999999999999999999.0", "1e20"),
            ("9223372036854775807", "9223372036854775807"),
            ("\"float32\"", "'float32'"),
            (r"'it\'s\\'", r"'it's\'"),
            ("_x1", "_x1"),
            ("()", "(tuple)"),
            ("(1,)", "(tuple 1)"),
            ("(1, 2,)", "(tuple 1 2)"),
            ("[1, 2]", "(list 1 2)"),
            ("[x]", "(list x)"),
            ("[]", "(list)"),
            ("x[[1, -2]]", "(index x (list 1 (neg 2)))"),
            ("((x))", "x"),
            ("f(a, b,)", "(call f a b)"),
            ("f(a, k=[1, 2],)", "(call f a k=(list 1 2))"),
            ("x[1]", "(index x 1)"),
            ("x[1,]", "(index x 1)"),
            ("x[1:]", "(index x (: 1 _ _))"),
            ("x[:]", "(index x (: _ _ _))"),
            ("x[::]", "(index x (: _ _ _))"),
            (
                "x[:-1, 1::-2, ...]",
                "(index x (: _ (neg 1) _) (: 1 _ (neg 2)) ...)",
            ),
            ("x[i + 1 : n * 2]", "(index x (: (+ i 1) (* n 2) _))"),
            (" \t x\n +\r\n1 ", "(+ x 1)"),
        ]);
    }

    #[test]
    fn spans() {
        let n = parse("a + b * c").unwrap();
        assert_eq!(n.span, Span { start: 0, end: 9 });
        let Kind::Binary { op_span, rhs, .. } = &n.kind else {
            panic!("{n:?}")
        };
        assert_eq!(*op_span, Span { start: 2, end: 3 });
        assert_eq!(rhs.span, Span { start: 4, end: 9 });
        let Kind::Binary { op_span, .. } = &rhs.kind else {
            panic!("{rhs:?}")
        };
        assert_eq!(*op_span, Span { start: 6, end: 7 });
        for (src, start, end) in [
            ("(a + b)", 0, 7),
            (" -x ", 1, 3),
            ("x.mean(axis=0)", 0, 14),
            ("x[1:2] ", 0, 6),
            ("[1]", 0, 3),
            ("'ab'", 0, 4),
        ] {
            assert_eq!(parse(src).unwrap().span, Span { start, end }, "{src:?}");
        }
    }

    const CHAINED: &str = "chained comparisons like a < b < c are not supported (NumPy arrays \
                           refuse them too); write (a < b) & (b < c)";

    #[test]
    fn errors_say_what_and_where() {
        let ops = "is not supported; operators are + - * / // % ** @ & | ^ ~ == != < <= > >=";
        let cases: &[(&str, &str, usize, usize)] = &[
            ("", "empty expression", 0, 0),
            (" \n ", "empty expression", 0, 3),
            ("x $ y", "unexpected character '$'", 2, 3),
            ("x + é€", "unexpected character '€'", 6, 9),
            ("x +", "unexpected end of input; expected an expression", 3, 3),
            ("x + \n", "unexpected end of input; expected an expression", 3, 3),
            ("mean(x, axis=0", "expected ')' to close the '(' at column 5", 14, 14),
            ("f(x,", "expected ')' to close the '(' at column 2", 4, 4),
            ("x[1:2", "expected ']' to close the '[' at column 2", 5, 5),
            ("[1, (2", "expected ')' to close the '(' at column 5", 6, 6),
            ("(x y)", "expected ',' or ')' to close the '(' at column 1, found 'y'", 3, 4),
            ("(x]", "expected ',' or ')' to close the '(' at column 1, found ']'", 2, 3),
            ("x[1:2:3:4]", "expected ',' or ']' to close the '[' at column 2, found ':'", 7, 8),
            (
                "99999999999999999999",
                "integer literal 99999999999999999999 is too large for a 64-bit integer; write 99999999999999999999.0 for a float",
                0,
                20,
            ),
            ("x y", "unexpected 'y' after the end of the expression", 2, 3),
            ("x .5", "unexpected '.5' after the end of the expression", 2, 4),
            ("x)", "unmatched ')'", 1, 2),
            ("x ) %", "unmatched ')'", 2, 3),
            ("x << 2", &format!("'<<' {ops}"), 2, 4),
            ("x >> 2", &format!("'>>' {ops}"), 2, 4),
            ("x and y", &format!("'and' {ops}"), 2, 5),
            ("not x", &format!("'not' {ops}"), 0, 3),
            ("(x <<", &format!("'<<' {ops}"), 3, 5),
            ("x ! y", "unexpected character '!'", 2, 3),
            ("0 < x < 1", CHAINED, 6, 7),
            ("x == y == z", CHAINED, 7, 9),
            ("f(axis=0, x)", "positional argument follows keyword argument", 10, 11),
            ("f(a=1, a=2)", "keyword argument 'a' given twice", 7, 8),
            ("f(x.y=1)", "keyword argument names must be plain names, like axis=0", 2, 5),
            ("f(,)", "expected an expression, found ','", 2, 3),
            ("f(*x)", "expected an expression, found '*'", 2, 3),
            ("x[1,,2]", "expected an index, found ','", 4, 5),
            ("x.", "unexpected end of input; expected a name after '.'", 2, 2),
            ("x.(1)", "expected a name after '.', found '('", 2, 3),
            ("x[]", "an index needs at least one item, like x[0] or x[:]", 2, 3),
            ("...", "'...' can only be used inside an index, like x[..., 0]", 0, 3),
            ("x + 'abc", "unterminated string starting at column 5", 4, 8),
            ("2j", "invalid number literal '2j'", 0, 2),
            ("0x1f", "invalid number literal '0x1f'", 0, 4),
            ("1e", "invalid number literal '1e'", 0, 2),
            ("1__0", "invalid number literal '1__0'", 0, 4),
            ("1._5", "invalid number literal '1._5'", 0, 4),
        ];
        for &(src, message, start, end) in cases {
            let e = parse(src).expect_err(src);
            assert_eq!(
                (e.to_string(), e.span),
                (message.to_string(), Span { start, end }),
                "{src:?}"
            );
        }
    }

    #[test]
    fn deep_input_is_refused_not_a_stack_overflow() {
        let wrap = |open: &str, inner: &str, close: &str, n: usize| {
            format!("{}{inner}{}", open.repeat(n), close.repeat(n))
        };
        // The worst accepted: all the brackets allowed, around the deepest tree allowed.
        let pows = format!("x{}", "**x".repeat(MAX_DEPTH - MAX_NESTING));
        for src in [
            wrap("(", "x", ")", MAX_NESTING),
            wrap("x[", &pows, "]", MAX_NESTING),
            wrap("f(", &pows, ")", MAX_NESTING),
            format!("x{}", " + x".repeat(MAX_DEPTH)),
            format!("{}x", "-".repeat(MAX_DEPTH)),
        ] {
            assert!(parse(&src).is_ok(), "{src}");
        }
        let brackets = "brackets are nested too deeply (more than 64 levels)";
        let too_deep = "expression is nested too deeply (more than 256 levels)";
        for (src, message) in [
            (wrap("(", "x", ")", MAX_NESTING + 1), brackets),
            (wrap("(", "x", ")", 100_000), brackets),
            (wrap("x[", "0", "]", 100_000), brackets),
            (wrap("f(", "x", ")", 100_000), brackets),
            (
                wrap("x[", &format!("{pows}**x"), "]", MAX_NESTING),
                too_deep,
            ),
            (format!("{}x", "-".repeat(MAX_DEPTH + 1)), too_deep),
            (format!("{}x", "-".repeat(100_000)), too_deep),
            (format!("x{}", "**x".repeat(100_000)), too_deep),
            (format!("x{}", "+x".repeat(100_000)), too_deep),
            (format!("x{}", ".a".repeat(100_000)), too_deep),
            (format!("x{}", "[0]".repeat(100_000)), too_deep),
        ] {
            assert_eq!(parse(&src).expect_err("too deep").message, message);
        }
    }

    #[test]
    fn render_error_draws_a_caret() {
        let src = "mean(x, axis=0";
        let e = parse(src).unwrap_err();
        let want = "syntax error: expected ')' to close the '(' at column 5\n  mean(x, axis=0\n                ^";
        assert_eq!(
            render_error(src, e.span, &format!("syntax error: {e}")),
            want
        );
        let render = |src, start, end| render_error(src, Span { start, end }, "m");
        assert_eq!(render("a +\tfoo(b)", 4, 7), "m\n  a +\tfoo(b)\n     \t^~~");
        assert_eq!(render("a\nbc + d\r\ne", 2, 99), "m\n  bc + d\n  ^~~~~~~");
        assert_eq!(render("€x", 1, 1), "m\n  €x\n  ^");
        assert_eq!(render("", 5, 0), "m\n  \n  ^");
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(src in "\\PC{0,60}") {
            if let Err(e) = parse(&src) {
                prop_assert!(e.span.start <= e.span.end && e.span.end <= src.len());
                render_error(&src, e.span, &e.message);
            }
        }

        #[test]
        fn expression_like_text_never_panics(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "x", "f", "1", "2.5", "1e", "_", ".", "...", "(", ")", "[", "]", ",", ":", "=", "+",
                "-", "*", "**", "/", "//", "@", "%", "'s'", "'", " ", "\n", "\t", "é", "<", "==",
                "&", "|", "^", "~", ">=", "!=",
            ]), 0..40),
            start in 0usize..200,
            len in 0usize..50,
        ) {
            let src = parts.concat();
            match parse(&src) {
                Ok(n) => prop_assert!(n.span.end <= src.len()),
                Err(e) => prop_assert!(e.span.start <= e.span.end && e.span.end <= src.len()),
            }
            render_error(&src, Span { start, end: start + len }, "m");
        }
    }
}
