//! Turns a parsed NumPy-style expression ([`super::expr`]) into an [`Array`].
//!
//! Names are the command's inputs (`--input x=FILE.h5:/x`), NumPy's functions (also as
//! `np.` / `numpy.` / `da.` attributes) and `True`/`False`/`None`. Every error points at the
//! part of the expression it is about.

use std::collections::HashMap;

use super::block::{BinOp, CmpOp, Dim, ReduceOp, UnaryOp};
use super::compose;
use super::data::{DType, Scalar};
use super::expr::{self, BinOp as AstOp, IndexItem, Kind, Node, Span};
use super::lazy::{Array, Operand, Select};

/// An evaluation error: what is wrong, and where in the expression.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalError {
    pub message: String,
    pub span: Span,
}

impl EvalError {
    /// The message with the expression and a caret under the place.
    pub fn render(&self, src: &str) -> String {
        expr::render_error(src, self.span, &self.message)
    }
}

type R<T> = std::result::Result<T, EvalError>;

fn fail<T>(span: Span, message: impl Into<String>) -> R<T> {
    Err(EvalError {
        message: message.into(),
        span,
    })
}

#[derive(Clone, Debug)]
enum Value {
    Array(Array),
    Number(Scalar),
    Bool(bool),
    None,
    Str(String),
    Tuple(Vec<Value>),
    /// A function by name (`mean`, `np.sqrt`).
    Func(String),
    /// A method bound to its array (`x.mean`).
    Method(Array, String),
    /// The `np` / `numpy` / `da` namespace.
    Module,
}

impl Value {
    fn kind(&self) -> &'static str {
        match self {
            Value::Array(_) => "an array",
            Value::Number(_) => "a number",
            Value::Bool(_) => "a boolean",
            Value::None => "None",
            Value::Str(_) => "a string",
            Value::Tuple(_) => "a tuple",
            Value::Func(_) | Value::Method(..) => "a function",
            Value::Module => "a module",
        }
    }
}

const FUNCTIONS: &[&str] = &[
    "sum",
    "mean",
    "min",
    "max",
    "var",
    "std",
    "sqrt",
    "exp",
    "log",
    "abs",
    "sin",
    "cos",
    "ones",
    "zeros",
    "full",
    "arange",
    "random",
    "dot",
    "matmul",
    "transpose",
    "negative",
    "absolute",
    "amin",
    "amax",
    "tanh",
    "arcsin",
    "arccos",
    "arctan",
    "log10",
    "log1p",
    "expm1",
    "sign",
    "floor",
    "ceil",
    "round",
    "around",
    "isnan",
    "isfinite",
    "invert",
    "logical_not",
    "minimum",
    "maximum",
    "clip",
    "where",
    "prod",
    "any",
    "all",
    "nanmin",
    "nanmax",
    "nansum",
    "nanmean",
    "nanvar",
    "nanstd",
    "count_nonzero",
    "argmin",
    "argmax",
    "cumsum",
    "cumprod",
    "squeeze",
    "expand_dims",
    "concatenate",
    "stack",
    "reshape",
    "median",
    "percentile",
    "tensordot",
];

/// The unary functions: name, operation.
const UNARY: &[(&str, UnaryOp)] = &[
    ("sqrt", UnaryOp::Sqrt),
    ("exp", UnaryOp::Exp),
    ("log", UnaryOp::Log),
    ("abs", UnaryOp::Abs),
    ("absolute", UnaryOp::Abs),
    ("sin", UnaryOp::Sin),
    ("cos", UnaryOp::Cos),
    ("negative", UnaryOp::Neg),
    ("tanh", UnaryOp::Tanh),
    ("arcsin", UnaryOp::Arcsin),
    ("arccos", UnaryOp::Arccos),
    ("arctan", UnaryOp::Arctan),
    ("log10", UnaryOp::Log10),
    ("log1p", UnaryOp::Log1p),
    ("expm1", UnaryOp::Expm1),
    ("sign", UnaryOp::Sign),
    ("floor", UnaryOp::Floor),
    ("ceil", UnaryOp::Ceil),
    ("isnan", UnaryOp::IsNan),
    ("isfinite", UnaryOp::IsFinite),
    ("invert", UnaryOp::Invert),
];

/// dtype names usable as values (`x.astype(bool)`, `x.astype(np.float32)`).
const DTYPES: &[&str] = &["bool", "bool_", "float64", "float32", "int64", "int32"];
const METHODS: &[&str] = &[
    "sum",
    "mean",
    "min",
    "max",
    "var",
    "std",
    "dot",
    "transpose",
    "astype",
    "rechunk",
    "round",
    "clip",
    "prod",
    "any",
    "all",
    "argmin",
    "argmax",
    "cumsum",
    "cumprod",
    "squeeze",
    "reshape",
];

/// Options every generator without `chunks=` gets.
#[derive(Clone, Debug, Default)]
pub struct Context {
    pub inputs: HashMap<String, Array>,
    /// `--chunks`: the chunk shape of generated arrays that do not say.
    pub default_chunks: Option<Vec<usize>>,
}

/// Parses and evaluates `src`; the error is rendered with a caret, ready to print.
pub fn evaluate(src: &str, ctx: &Context) -> std::result::Result<Array, String> {
    let node = expr::parse(src).map_err(|e| expr::render_error(src, e.span, &e.message))?;
    let v = eval(&node, ctx).map_err(|e| e.render(src))?;
    match v {
        Value::Array(a) => Ok(a),
        other => Err(expr::render_error(
            src,
            node.span,
            &format!(
                "the expression gives {}, not an array: use an input (--input NAME=FILE.h5:/path) or a generator such as ones((3, 3))",
                other.kind()
            ),
        )),
    }
}

fn eval(n: &Node, ctx: &Context) -> R<Value> {
    match &n.kind {
        Kind::Int(i) => Ok(Value::Number(Scalar::Int(*i))),
        Kind::Float(f) => Ok(Value::Number(Scalar::Float(*f))),
        Kind::Str(s) => Ok(Value::Str(s.clone())),
        Kind::Name(name) => name_value(name, n.span, ctx),
        Kind::Tuple(items) | Kind::List(items) => Ok(Value::Tuple(
            items.iter().map(|i| eval(i, ctx)).collect::<R<_>>()?,
        )),
        Kind::Neg(x) => match eval(x, ctx)? {
            Value::Array(a) => Ok(Value::Array(a.unary(UnaryOp::Neg).map_err(|m| {
                EvalError {
                    message: m,
                    span: n.span,
                }
            })?)),
            Value::Number(Scalar::Int(i)) => match i.checked_neg() {
                Some(v) => Ok(Value::Number(Scalar::Int(v))),
                None => fail(n.span, "the integer result does not fit in 64 bits"),
            },
            Value::Number(Scalar::Float(f)) => Ok(Value::Number(Scalar::Float(-f))),
            other => fail(x.span, format!("cannot negate {}", other.kind())),
        },
        Kind::Pos(x) => eval(x, ctx),
        Kind::Invert(x) => match eval(x, ctx)? {
            Value::Array(a) => Ok(Value::Array(a.unary(UnaryOp::Invert).map_err(|m| {
                EvalError {
                    message: m,
                    span: n.span,
                }
            })?)),
            Value::Number(Scalar::Int(i)) => Ok(Value::Number(Scalar::Int(!i))),
            Value::Bool(b) => Ok(Value::Bool(!b)),
            other => fail(x.span, format!("cannot invert (~) {}", other.kind())),
        },
        Kind::Binary {
            op,
            lhs,
            rhs,
            op_span,
        } => {
            let l = eval(lhs, ctx)?;
            let r = eval(rhs, ctx)?;
            binary(*op, l, r, *op_span, lhs.span, rhs.span)
        }
        Kind::Attribute { value, name } => {
            let v = eval(value, ctx)?;
            attribute(v, name, n.span)
        }
        Kind::Call { func, args, kwargs } => {
            let f = eval(func, ctx)?;
            let args: Vec<(Value, Span)> = args
                .iter()
                .map(|a| Ok((eval(a, ctx)?, a.span)))
                .collect::<R<_>>()?;
            let kwargs: Vec<(String, Value, Span)> = kwargs
                .iter()
                .map(|(k, v)| Ok((k.clone(), eval(v, ctx)?, v.span)))
                .collect::<R<_>>()?;
            call(f, args, kwargs, n.span, func.span, ctx)
        }
        Kind::Index { value, items } => {
            let v = eval(value, ctx)?;
            match (v, items.as_slice()) {
                (Value::Array(a), _) => index(&a, items, n.span, ctx),
                // `x.shape[0]`: a tuple indexed by one int, as in Python.
                (Value::Tuple(t), [IndexItem::Single(i)]) => {
                    let k = int_of(&(eval(i, ctx)?, i.span), "a tuple index")?;
                    let at = if k < 0 { k + t.len() as i64 } else { k };
                    usize::try_from(at)
                        .ok()
                        .and_then(|at| t.get(at).cloned())
                        .ok_or_else(|| EvalError {
                            message: "tuple index out of range".into(),
                            span: i.span,
                        })
                }
                (v, _) => fail(value.span, format!("cannot index {}", v.kind())),
            }
        }
    }
}

fn name_value(name: &str, span: Span, ctx: &Context) -> R<Value> {
    if let Some(a) = ctx.inputs.get(name) {
        return Ok(Value::Array(a.clone()));
    }
    Ok(match name {
        "True" => Value::Bool(true),
        "False" => Value::Bool(false),
        "None" => Value::None,
        "np" | "numpy" | "da" => Value::Module,
        "pi" => Value::Number(Scalar::Float(std::f64::consts::PI)),
        "newaxis" => Value::None,
        "nan" | "inf" => Value::Number(Scalar::Float(if name == "nan" {
            f64::NAN
        } else {
            f64::INFINITY
        })),
        "bool" | "float" | "int" => Value::Str(name.to_string()),
        "e" => Value::Number(Scalar::Float(std::f64::consts::E)),
        f if FUNCTIONS.contains(&f) => Value::Func(f.to_string()),
        _ => {
            let mut known: Vec<&String> = ctx.inputs.keys().collect();
            known.sort();
            let inputs = if known.is_empty() {
                "no inputs were given".to_string()
            } else {
                format!(
                    "inputs: {}",
                    known
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            return fail(
                span,
                format!(
                    "unknown name '{name}' ({inputs}; give one with --input {name}=FILE.h5:/dataset)"
                ),
            );
        }
    })
}

fn attribute(v: Value, name: &str, span: Span) -> R<Value> {
    match v {
        Value::Module if FUNCTIONS.contains(&name) => Ok(Value::Func(name.to_string())),
        Value::Module if DTYPES.contains(&name) => Ok(Value::Str(name.to_string())),
        Value::Module if name == "newaxis" => Ok(Value::None),
        Value::Module if name == "nan" => Ok(Value::Number(Scalar::Float(f64::NAN))),
        Value::Module if name == "inf" => Ok(Value::Number(Scalar::Float(f64::INFINITY))),
        Value::Module if name == "pi" => Ok(Value::Number(Scalar::Float(std::f64::consts::PI))),
        Value::Module if name == "random" => Ok(Value::Func("random".into())),
        Value::Module => fail(
            span,
            format!(
                "unsupported function '{name}' (supported: {})",
                FUNCTIONS.join(", ")
            ),
        ),
        Value::Func(f) if f == "random" && (name == "random" || name == "default_rng") => {
            Ok(Value::Func("random".into()))
        }
        Value::Array(a) => match name {
            "T" => Ok(Value::Array(
                a.transpose(None)
                    .map_err(|m| EvalError { message: m, span })?,
            )),
            "shape" => Ok(Value::Tuple(
                a.shape()
                    .iter()
                    .map(|&n| Value::Number(Scalar::Int(n as i64)))
                    .collect(),
            )),
            "ndim" => Ok(Value::Number(Scalar::Int(a.ndim() as i64))),
            "size" => Ok(Value::Number(Scalar::Int(
                a.shape().iter().product::<usize>() as i64,
            ))),
            "dtype" => Ok(Value::Str(a.dtype().name().to_string())),
            m if METHODS.contains(&m) => Ok(Value::Method(a, m.to_string())),
            _ => fail(
                span,
                format!(
                    "arrays have no attribute '{name}' here (supported: T, shape, ndim, size, \
                     dtype, {})",
                    METHODS.join(", ")
                ),
            ),
        },
        other => fail(span, format!("{} has no attribute '{name}'", other.kind())),
    }
}

/// What an operator of the expression does.
enum Operator {
    Arith(BinOp),
    Compare(CmpOp),
    MatMul,
}

fn to_op(op: AstOp) -> Operator {
    use Operator::{Arith, Compare};
    match op {
        AstOp::Add => Arith(BinOp::Add),
        AstOp::Sub => Arith(BinOp::Sub),
        AstOp::Mul => Arith(BinOp::Mul),
        AstOp::Div => Arith(BinOp::Div),
        AstOp::Pow => Arith(BinOp::Pow),
        AstOp::FloorDiv => Arith(BinOp::FloorDiv),
        AstOp::Mod => Arith(BinOp::Mod),
        AstOp::BitAnd => Arith(BinOp::BitAnd),
        AstOp::BitOr => Arith(BinOp::BitOr),
        AstOp::BitXor => Arith(BinOp::BitXor),
        AstOp::Eq => Compare(CmpOp::Eq),
        AstOp::Ne => Compare(CmpOp::Ne),
        AstOp::Lt => Compare(CmpOp::Lt),
        AstOp::Le => Compare(CmpOp::Le),
        AstOp::Gt => Compare(CmpOp::Gt),
        AstOp::Ge => Compare(CmpOp::Ge),
        AstOp::MatMul => Operator::MatMul,
    }
}

/// Python's arithmetic on two numbers (ints exact, never wrapped).
fn scalar_op(op: BinOp, a: Scalar, b: Scalar, span: Span) -> R<Scalar> {
    use Scalar::*;
    // Python ints do not wrap: a result beyond 64 bits is refused rather than wrapped.
    let too_large = || EvalError {
        message: "the integer result does not fit in 64 bits (write a float, e.g. 2.0 ** 70)"
            .into(),
        span,
    };
    let by_zero = matches!(op, BinOp::Div | BinOp::FloorDiv | BinOp::Mod) && b.as_f64() == 0.0;
    if by_zero {
        return fail(span, "division by zero");
    }
    Ok(match (op, a, b) {
        (BinOp::Add, Int(x), Int(y)) => Int(x.checked_add(y).ok_or_else(too_large)?),
        (BinOp::Sub, Int(x), Int(y)) => Int(x.checked_sub(y).ok_or_else(too_large)?),
        (BinOp::Mul, Int(x), Int(y)) => Int(x.checked_mul(y).ok_or_else(too_large)?),
        (BinOp::Pow, Int(x), Int(y)) if y >= 0 => Int(u32::try_from(y)
            .ok()
            .and_then(|y| x.checked_pow(y))
            .ok_or_else(too_large)?),
        (BinOp::FloorDiv, Int(x), Int(y)) => {
            x.checked_div(y).ok_or_else(too_large)?;
            Int(crate::array::block::Elem::floor_div(x, y))
        }
        (BinOp::Mod, Int(x), Int(y)) => Int(crate::array::block::Elem::floor_mod(x, y)),
        (BinOp::BitAnd, Int(x), Int(y)) => Int(x & y),
        (BinOp::BitOr, Int(x), Int(y)) => Int(x | y),
        (BinOp::BitXor, Int(x), Int(y)) => Int(x ^ y),
        (BinOp::BitAnd | BinOp::BitOr | BinOp::BitXor, ..) => {
            return fail(span, "& | ^ need integers, not floats")
        }
        (BinOp::Minimum | BinOp::Maximum, ..) => {
            unreachable!("minimum/maximum of two numbers is computed by the caller")
        }
        (op, x, y) => {
            let (x, y) = (x.as_f64(), y.as_f64());
            Float(match op {
                BinOp::Add => x + y,
                BinOp::Sub => x - y,
                BinOp::Mul => x * y,
                BinOp::Div => x / y,
                BinOp::Pow => x.powf(y),
                BinOp::FloorDiv => crate::array::block::Elem::floor_div(x, y),
                _ => crate::array::block::Elem::floor_mod(x, y),
            })
        }
    })
}

fn binary(op: AstOp, l: Value, r: Value, op_span: Span, ls: Span, rs: Span) -> R<Value> {
    let err = |m: String| EvalError {
        message: m,
        span: op_span,
    };
    let bop = match to_op(op) {
        Operator::Arith(bop) => bop,
        Operator::MatMul => {
            return match (l, r) {
                (Value::Array(a), Value::Array(b)) => Ok(Value::Array(a.dot(&b).map_err(err)?)),
                (l, r) => fail(
                    op_span,
                    format!("'@' needs two arrays, got {} and {}", l.kind(), r.kind()),
                ),
            }
        }
        Operator::Compare(cop) => {
            return match (l, r) {
                (Value::Array(a), Value::Array(b)) => {
                    Ok(Value::Array(a.compare(cop, &b).map_err(err)?))
                }
                (Value::Array(a), Value::Number(s)) => {
                    Ok(Value::Array(a.compare_scalar(cop, s, false).map_err(err)?))
                }
                (Value::Number(s), Value::Array(a)) => {
                    Ok(Value::Array(a.compare_scalar(cop, s, true).map_err(err)?))
                }
                (Value::Number(x), Value::Number(y)) => Ok(Value::Bool(match (x, y) {
                    (Scalar::Int(x), Scalar::Int(y)) => cop.holds(&x, &y),
                    (x, y) => cop.holds(&x.as_f64(), &y.as_f64()),
                })),
                (Value::Array(_) | Value::Number(_), other) => fail(
                    rs,
                    format!("cannot compare an array or number with {}", other.kind()),
                ),
                (other, _) => fail(ls, format!("cannot compare {}", other.kind())),
            }
        }
    };
    match (l, r) {
        (Value::Array(a), Value::Array(b)) => Ok(Value::Array(a.binary(bop, &b).map_err(err)?)),
        (Value::Array(a), Value::Number(s)) => {
            Ok(Value::Array(a.with_scalar(bop, s, false).map_err(err)?))
        }
        (Value::Number(s), Value::Array(a)) => {
            Ok(Value::Array(a.with_scalar(bop, s, true).map_err(err)?))
        }
        (Value::Number(x), Value::Number(y)) => Ok(Value::Number(scalar_op(bop, x, y, op_span)?)),
        (Value::Array(_) | Value::Number(_), other) => fail(
            rs,
            format!("cannot combine an array or number with {}", other.kind()),
        ),
        (other, _) => fail(ls, format!("cannot compute with {}", other.kind())),
    }
}

/// Arguments of one call, taken by position or keyword.
struct Args {
    positional: Vec<(Value, Span)>,
    keywords: Vec<(String, Value, Span)>,
    span: Span,
    func: String,
}

impl Args {
    fn take(&mut self, pos: usize, name: &str) -> Option<(Value, Span)> {
        if let Some(i) = self.keywords.iter().position(|(k, _, _)| k == name) {
            let (_, v, s) = self.keywords.remove(i);
            return Some((v, s));
        }
        if pos < self.positional.len() {
            let (v, s) = std::mem::replace(&mut self.positional[pos], (Value::None, self.span));
            if matches!(v, Value::None) && s == self.span {
                return None;
            }
            return Some((v, s));
        }
        None
    }

    fn required(&mut self, pos: usize, name: &str) -> R<(Value, Span)> {
        self.take(pos, name).ok_or_else(|| EvalError {
            message: format!("{}() is missing its argument '{name}'", self.func),
            span: self.span,
        })
    }

    /// Refuses arguments nobody took.
    fn done(self, used_positional: usize) -> R<()> {
        if let Some((k, _, s)) = self.keywords.first() {
            return fail(
                *s,
                format!("{}() got an unexpected keyword argument '{k}'", self.func),
            );
        }
        if self.positional.len() > used_positional {
            return fail(
                self.positional[used_positional].1,
                format!(
                    "{}() takes at most {used_positional} positional arguments",
                    self.func
                ),
            );
        }
        Ok(())
    }
}

fn array_of(v: (Value, Span), what: &str) -> R<Array> {
    match v.0 {
        Value::Array(a) => Ok(a),
        other => fail(
            v.1,
            format!("{what} must be an array, got {}", other.kind()),
        ),
    }
}

fn int_of(v: &(Value, Span), what: &str) -> R<i64> {
    match v.0 {
        Value::Number(Scalar::Int(i)) => Ok(i),
        ref other => fail(
            v.1,
            format!("{what} must be an integer, got {}", other.kind()),
        ),
    }
}

fn number_of(v: &(Value, Span), what: &str) -> R<Scalar> {
    match v.0 {
        Value::Number(s) => Ok(s),
        ref other => fail(
            v.1,
            format!("{what} must be a number, got {}", other.kind()),
        ),
    }
}

fn ints_of(v: &(Value, Span), what: &str) -> R<Vec<i64>> {
    match &v.0 {
        Value::Number(Scalar::Int(i)) => Ok(vec![*i]),
        Value::Tuple(items) => items
            .iter()
            .map(|i| int_of(&(i.clone(), v.1), what))
            .collect(),
        other => fail(
            v.1,
            format!(
                "{what} must be an integer or a tuple of integers, got {}",
                other.kind()
            ),
        ),
    }
}

fn shape_of(v: &(Value, Span), what: &str) -> R<Vec<usize>> {
    ints_of(v, what)?
        .into_iter()
        .map(|i| {
            usize::try_from(i).map_err(|_| EvalError {
                message: format!("{what} must not be negative, got {i}"),
                span: v.1,
            })
        })
        .collect()
}

fn bool_of(v: &(Value, Span), what: &str) -> R<bool> {
    match v.0 {
        Value::Bool(b) => Ok(b),
        ref other => fail(
            v.1,
            format!("{what} must be True or False, got {}", other.kind()),
        ),
    }
}

fn chunks_arg(
    args: &mut Args,
    pos: usize,
    ctx: &Context,
    shape: &[usize],
) -> R<Option<Vec<usize>>> {
    match args.take(pos, "chunks") {
        Some(v) => Ok(Some(shape_of(&v, "chunks")?)),
        None => Ok(ctx
            .default_chunks
            .clone()
            .filter(|c| c.len() == shape.len())),
    }
}

fn call(
    f: Value,
    positional: Vec<(Value, Span)>,
    keywords: Vec<(String, Value, Span)>,
    span: Span,
    fspan: Span,
    ctx: &Context,
) -> R<Value> {
    let (name, this) = match f {
        Value::Func(n) => (n, None),
        Value::Method(a, n) => (n, Some(a)),
        other => return fail(fspan, format!("{} is not callable", other.kind())),
    };
    let mut args = Args {
        positional,
        keywords,
        span,
        func: name.clone(),
    };
    // For functions the array is the first positional argument; for methods it is bound.
    let shift = usize::from(this.is_none());
    let subject = |args: &mut Args| -> R<Array> {
        match &this {
            Some(a) => Ok(a.clone()),
            None => array_of(args.required(0, "a")?, "the first argument"),
        }
    };
    let err = |m: String| EvalError { message: m, span };
    let reduce = |op: ReduceOp, nan: bool, args: &mut Args, a: Array| -> R<Value> {
        let axis = match args.take(shift, "axis") {
            None | Some((Value::None, _)) => None,
            Some(v) => Some(ints_of(&v, "axis")?),
        };
        let keepdims = match args.take(usize::MAX, "keepdims") {
            Some(v) => bool_of(&v, "keepdims")?,
            None => false,
        };
        let ddof = match args.take(usize::MAX, "ddof") {
            Some(v) if matches!(op, ReduceOp::Var | ReduceOp::Std) => {
                number_of(&v, "ddof")?.as_f64()
            }
            Some(v) => return fail(v.1, format!("{}() takes no ddof", op.name())),
            None => 0.0,
        };
        let reduced = if nan {
            a.nan_reduce(op, axis.as_deref(), keepdims, ddof)
        } else {
            a.reduce(op, axis.as_deref(), keepdims, ddof)
        };
        reduced
            .map(Value::Array)
            .map_err(|m| EvalError { message: m, span })
    };
    let value = match name.as_str() {
        "sum" | "mean" | "min" | "max" | "var" | "std" | "amin" | "amax" | "prod" | "any"
        | "all" | "nanmin" | "nanmax" | "nansum" | "nanmean" | "nanvar" | "nanstd"
        | "count_nonzero" | "argmin" | "argmax" => {
            let (op, nan) = match name.as_str() {
                "amin" => (ReduceOp::Min, false),
                "amax" => (ReduceOp::Max, false),
                "count_nonzero" => (ReduceOp::Sum, false),
                "nansum" | "nanmean" | "nanvar" | "nanstd" => {
                    (ReduceOp::parse(&name[3..]).expect("a reduction name"), true)
                }
                n => (ReduceOp::parse(n).expect("a reduction name"), false),
            };
            let mut a = subject(&mut args)?;
            if name == "count_nonzero" {
                a = a.astype(DType::Bool);
            }
            let v = reduce(op, nan, &mut args, a)?;
            args.done(shift + 1)?;
            return Ok(v);
        }
        "round" | "around" => {
            let (v, s) = match &this {
                Some(a) => (Value::Array(a.clone()), span),
                None => args.required(0, "a")?,
            };
            let decimals = match args.take(shift, "decimals") {
                Some(d) => int_of(&d, "decimals")?,
                None => 0,
            };
            args.done(shift + 1)?;
            let decimals = i32::try_from(decimals).map_err(|_| EvalError {
                message: format!("decimals={decimals} is out of range"),
                span,
            })?;
            match v {
                Value::Array(a) => Value::Array(a.unary(UnaryOp::Round(decimals)).map_err(err)?),
                other => return fail(s, format!("round() needs an array, got {}", other.kind())),
            }
        }
        "squeeze" => {
            let a = subject(&mut args)?;
            let axis = match args.take(shift, "axis") {
                None | Some((Value::None, _)) => None,
                Some(v) => Some(ints_of(&v, "axis")?),
            };
            args.done(shift + 1)?;
            Value::Array(a.squeeze(axis.as_deref()).map_err(err)?)
        }
        "median" | "percentile" => {
            let a = subject(&mut args)?;
            let q = if name == "percentile" {
                let v = args.required(1, "q")?;
                Some(number_of(&v, "q (one number here)")?.as_f64())
            } else {
                None
            };
            let pos = if name == "percentile" { 2 } else { 1 };
            let axis = match args.take(pos, "axis") {
                None | Some((Value::None, _)) => None,
                Some(v) => Some(int_of(&v, "axis (one axis or None here)")?),
            };
            args.done(pos + 1)?;
            Value::Array(a.quantile(q, axis).map_err(err)?)
        }
        "reshape" => {
            let a = subject(&mut args)?;
            // x.reshape(2, 3) and x.reshape((2, 3)) both work, as in NumPy.
            let shape = if this.is_some() && args.positional.len() > 1 {
                let dims = std::mem::take(&mut args.positional);
                dims.iter()
                    .map(|d| int_of(d, "shape"))
                    .collect::<R<Vec<_>>>()?
            } else {
                ints_of(&args.required(shift, "shape")?, "shape")?
            };
            args.done(shift + 1)?;
            Value::Array(a.reshape(&shape).map_err(err)?)
        }
        "expand_dims" => {
            let a = subject(&mut args)?;
            let axis = ints_of(&args.required(1, "axis")?, "axis")?;
            args.done(2)?;
            Value::Array(a.expand_dims(&axis).map_err(err)?)
        }
        "concatenate" | "stack" => {
            let (list, ls) = args.required(0, "arrays")?;
            let axis = match args.take(1, "axis") {
                Some(v) => int_of(&v, "axis")?,
                None => 0,
            };
            args.done(2)?;
            let Value::Tuple(items) = list else {
                return fail(ls, format!("{name}() needs a tuple or list of arrays"));
            };
            let arrays = items
                .into_iter()
                .map(|v| array_of((v, ls), "each item"))
                .collect::<R<Vec<_>>>()?;
            Value::Array(if name == "stack" {
                Array::stack(&arrays, axis).map_err(err)?
            } else {
                Array::concatenate(&arrays, axis).map_err(err)?
            })
        }
        "cumsum" | "cumprod" => {
            let a = subject(&mut args)?;
            let axis = match args.take(shift, "axis") {
                None | Some((Value::None, _)) => None,
                Some(v) => Some(int_of(&v, "axis")?),
            };
            args.done(shift + 1)?;
            let op = if name == "cumsum" {
                BinOp::Add
            } else {
                BinOp::Mul
            };
            Value::Array(a.scan(op, axis).map_err(err)?)
        }
        "minimum" | "maximum" => {
            let op = if name == "minimum" {
                BinOp::Minimum
            } else {
                BinOp::Maximum
            };
            let a = args.required(0, "x1")?;
            let b = args.required(1, "x2")?;
            args.done(2)?;
            match (a.0, b.0) {
                (Value::Array(x), Value::Array(y)) => Value::Array(x.binary(op, &y).map_err(err)?),
                (Value::Array(x), Value::Number(n)) | (Value::Number(n), Value::Array(x)) => {
                    Value::Array(x.with_scalar(op, n, false).map_err(err)?)
                }
                (x, _) => {
                    return fail(
                        span,
                        format!("{name}() needs an array, got {} only", x.kind()),
                    )
                }
            }
        }
        "clip" => {
            let a = subject(&mut args)?;
            let lo = args
                .take(shift, "a_min")
                .or_else(|| args.take(usize::MAX, "min"));
            let hi = args
                .take(shift + 1, "a_max")
                .or_else(|| args.take(usize::MAX, "max"));
            args.done(shift + 2)?;
            Value::Array(clip(a, lo, hi, span)?)
        }
        "where" => {
            let c = array_of(args.required(0, "condition")?, "where's condition")?;
            let operand = |v: (Value, Span)| match v.0 {
                Value::Array(a) => Ok(Operand::Array(a)),
                Value::Number(n) => Ok(Operand::Number(n)),
                Value::Bool(b) => Ok(Operand::Number(Scalar::Int(i64::from(b)))),
                other => fail(
                    v.1,
                    format!(
                        "where's choices must be arrays or numbers, got {}",
                        other.kind()
                    ),
                ),
            };
            let x = operand(args.required(1, "x")?)?;
            let y = operand(args.required(2, "y")?)?;
            args.done(3)?;
            Value::Array(Array::where_(&c, x, y).map_err(err)?)
        }
        "logical_not" => {
            let a = subject(&mut args)?;
            args.done(1)?;
            Value::Array(a.astype(DType::Bool).unary(UnaryOp::Invert).map_err(err)?)
        }
        f if UNARY.iter().any(|(n, _)| *n == f) => {
            let op = UNARY.iter().find(|(n, _)| *n == f).expect("found").1;
            let (v, s) = args.required(0, "x")?;
            args.done(1)?;
            match v {
                Value::Array(a) => Value::Array(a.unary(op).map_err(err)?),
                Value::Number(x) => {
                    let x = x.as_f64();
                    let f = match op {
                        UnaryOp::IsNan => return Ok(Value::Bool(x.is_nan())),
                        UnaryOp::IsFinite => return Ok(Value::Bool(x.is_finite())),
                        UnaryOp::Sqrt => x.sqrt(),
                        UnaryOp::Exp => x.exp(),
                        UnaryOp::Log => x.ln(),
                        UnaryOp::Abs => x.abs(),
                        UnaryOp::Sin => x.sin(),
                        UnaryOp::Cos => x.cos(),
                        UnaryOp::Neg => -x,
                        UnaryOp::Tanh => x.tanh(),
                        UnaryOp::Arcsin => x.asin(),
                        UnaryOp::Arccos => x.acos(),
                        UnaryOp::Arctan => x.atan(),
                        UnaryOp::Log10 => x.log10(),
                        UnaryOp::Log1p => x.ln_1p(),
                        UnaryOp::Expm1 => x.exp_m1(),
                        UnaryOp::Floor => x.floor(),
                        UnaryOp::Ceil => x.ceil(),
                        UnaryOp::Sign | UnaryOp::Round(_) | UnaryOp::Invert => {
                            return fail(s, format!("{name}() needs an array here"))
                        }
                    };
                    Value::Number(Scalar::Float(f))
                }
                other => {
                    return fail(
                        s,
                        format!("{name}() needs an array or a number, got {}", other.kind()),
                    )
                }
            }
        }
        "tensordot" => {
            let a = array_of(args.required(0, "a")?, "the first argument")?;
            let b = array_of(args.required(1, "b")?, "the second argument")?;
            let axes = args.take(2, "axes");
            args.done(3)?;
            let product = match axes {
                None => compose::tensordot_n(&a, &b, 2),
                Some((Value::Number(Scalar::Int(n)), _)) => compose::tensordot_n(&a, &b, n),
                Some((Value::Tuple(pair), s)) if pair.len() == 2 => {
                    let a_axes = ints_of(&(pair[0].clone(), s), "tensordot's axes")?;
                    let b_axes = ints_of(&(pair[1].clone(), s), "tensordot's axes")?;
                    compose::tensordot(&a, &b, &a_axes, &b_axes)
                }
                Some((other, s)) => {
                    return fail(
                        s,
                        format!(
                            "tensordot's axes must be an integer or a pair of axis lists,                              like axes=([1, 0], [0, 1]); got {}",
                            other.kind()
                        ),
                    )
                }
            };
            Value::Array(product.map_err(err)?)
        }
        "dot" | "matmul" => {
            let a = subject(&mut args)?;
            let b = array_of(args.required(shift, "b")?, "the other operand")?;
            args.done(shift + 1)?;
            Value::Array(a.dot(&b).map_err(err)?)
        }
        "transpose" => {
            let a = subject(&mut args)?;
            let axes = match args.take(shift, "axes") {
                None | Some((Value::None, _)) => None,
                Some(v) => Some(shape_of(&v, "axes")?),
            };
            args.done(shift + 1)?;
            Value::Array(a.transpose(axes.as_deref()).map_err(err)?)
        }
        "astype" => {
            let a = subject(&mut args)?;
            let (v, s) = args.required(0, "dtype")?;
            args.done(1)?;
            let d = match &v {
                Value::Str(t) => DType::parse(t),
                Value::Func(f) => DType::parse(f),
                _ => None,
            };
            let Some(d) = d else {
                return fail(
                    s,
                    "unsupported dtype: use 'float64', 'float32', 'int64', 'int32' or 'bool'",
                );
            };
            Value::Array(a.astype(d))
        }
        "rechunk" => {
            let a = subject(&mut args)?;
            let c = args.required(0, "chunks")?;
            args.done(1)?;
            Value::Array(a.rechunk(&shape_of(&c, "chunks")?).map_err(err)?)
        }
        "ones" | "zeros" | "full" | "random" => {
            let sh = args.required(0, "shape")?;
            let shape = shape_of(&sh, "shape")?;
            let mut used = 1;
            let value = match name.as_str() {
                "ones" => Scalar::Float(1.0),
                "zeros" => Scalar::Float(0.0),
                "full" => {
                    used = 2;
                    number_of(&args.required(1, "fill_value")?, "fill_value")?
                }
                _ => Scalar::Float(0.0),
            };
            let seed = if name == "random" {
                let s = args
                    .take(usize::MAX, "seed")
                    .map(|v| int_of(&v, "seed"))
                    .transpose()?;
                Some(s.unwrap_or(0) as u64)
            } else {
                None
            };
            let dtype = match args.take(usize::MAX, "dtype") {
                Some((Value::Str(t), s)) => DType::parse(&t).ok_or_else(|| EvalError {
                    message: format!(
                        "unsupported dtype '{t}': use float64, float32, int64, int32 or bool"
                    ),
                    span: s,
                })?,
                Some(v) => return fail(v.1, "dtype must be a string such as 'float32'"),
                None if name == "full" => match value {
                    Scalar::Int(_) => DType::I64,
                    Scalar::Float(_) => DType::F64,
                },
                None => DType::F64,
            };
            if let Scalar::Int(i) = value {
                // NumPy 2 refuses np.full((2,), 2**40, dtype='i4') too (NEP 50).
                dtype.check_fits(i).map_err(err)?;
            }
            let chunks = chunks_arg(&mut args, usize::MAX, ctx, &shape)?;
            args.done(used)?;
            let a = match seed {
                Some(seed) => {
                    Array::random(&shape, seed, chunks.as_deref()).map(|a| a.astype(dtype))
                }
                None => Array::full(&shape, value, dtype, chunks.as_deref()),
            };
            Value::Array(a.map_err(err)?)
        }
        "arange" => {
            let first = number_of(&args.required(0, "stop")?, "arange's arguments")?;
            let second = args
                .take(1, "stop")
                .map(|v| number_of(&v, "stop"))
                .transpose()?;
            let step = args
                .take(2, "step")
                .map(|v| number_of(&v, "step"))
                .transpose()?;
            let (start, stop) = match second {
                Some(stop) => (first, stop),
                None => (Scalar::Int(0), first),
            };
            let n = ((stop.as_f64() - start.as_f64()) / step.unwrap_or(Scalar::Int(1)).as_f64())
                .ceil()
                .max(0.0) as usize;
            let chunks = chunks_arg(&mut args, usize::MAX, ctx, &[n])?;
            args.done(3)?;
            Value::Array(
                Array::arange(
                    start,
                    stop,
                    step.unwrap_or(Scalar::Int(1)),
                    chunks.as_deref(),
                )
                .map_err(err)?,
            )
        }
        other => return fail(fspan, format!("unsupported function '{other}'")),
    };
    Ok(value)
}

/// `clip(a, lo, hi)` as NumPy defines it, `minimum(maximum(a, lo), hi)`, either bound
/// optional. A Python int bound beyond an integer array's range clips nothing, as in NumPy 2
/// (which compares such ints exactly rather than refusing them), so it is clamped to the range.
fn clip(a: Array, lo: Option<(Value, Span)>, hi: Option<(Value, Span)>, span: Span) -> R<Array> {
    let err = |m: String| EvalError { message: m, span };
    let bound = |a: Array, b: Option<(Value, Span)>, op: BinOp| -> R<Array> {
        match b {
            None | Some((Value::None, _)) => Ok(a),
            Some((Value::Array(b), _)) => a.binary(op, &b).map_err(err),
            Some((Value::Number(n), _)) => {
                let n = match (n, a.dtype()) {
                    (Scalar::Int(i), DType::I32) => {
                        Scalar::Int(i.clamp(i32::MIN as i64, i32::MAX as i64))
                    }
                    (n, _) => n,
                };
                a.with_scalar(op, n, false).map_err(err)
            }
            Some((other, s)) => fail(
                s,
                format!(
                    "clip's bounds must be arrays, numbers or None, got {}",
                    other.kind()
                ),
            ),
        }
    };
    if matches!(
        (&lo, &hi),
        (None | Some((Value::None, _)), None | Some((Value::None, _)))
    ) {
        return fail(span, "One of max or min must be given");
    }
    let a = bound(a, lo, BinOp::Maximum)?;
    bound(a, hi, BinOp::Minimum)
}

/// Python's slice semantics for one axis of length `len` (negative indices count from the
/// end; out-of-range bounds are clamped): the selected elements as an ascending range, and
/// whether a negative step takes them in reverse.
fn slice_dim(
    start: Option<i64>,
    stop: Option<i64>,
    step: Option<i64>,
    len: u64,
    span: Span,
) -> R<(Dim, bool)> {
    let step = step.unwrap_or(1);
    if step == 0 {
        return fail(span, "slice step cannot be zero");
    }
    let n = len as i64;
    if step > 0 {
        let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n);
        let s = start.map(clamp).unwrap_or(0);
        let e = stop.map(clamp).unwrap_or(n);
        let count = if e > s { (e - s + step - 1) / step } else { 0 };
        let dim = Dim {
            start: s as u64,
            len: count as u64,
            step: step as u64,
        };
        return Ok((dim, false));
    }
    // Negative steps: bounds clamp to [-1, n - 1], -1 meaning "before the first".
    let clamp = |v: i64| (if v < 0 { v + n } else { v }).clamp(-1, n - 1);
    let s = start.map(clamp).unwrap_or(n - 1);
    let e = stop.map(clamp).unwrap_or(-1);
    let back = -step;
    let count = if s > e { (s - e - 1) / back + 1 } else { 0 };
    let lowest = if count > 0 { s - (count - 1) * back } else { 0 };
    let dim = Dim {
        start: lowest as u64,
        len: count as u64,
        step: back as u64,
    };
    Ok((dim, true))
}

/// What one index item makes of the result's axes.
enum Out {
    /// `None` / `np.newaxis`: a new axis of length 1.
    New,
    /// A slice: an axis of the sliced array, reversed for a negative step.
    Range { flip: bool },
}

fn index(a: &Array, items: &[IndexItem], span: Span, ctx: &Context) -> R<Value> {
    let err = |m: String| EvalError { message: m, span };
    let int_at = |n: &Option<Node>| -> R<Option<i64>> {
        match n {
            None => Ok(None),
            Some(n) => {
                let v = eval(n, ctx)?;
                match v {
                    Value::None => Ok(None),
                    v => Ok(Some(int_of(&(v, n.span), "slice bounds")?)),
                }
            }
        }
    };
    // Evaluate single items once: None adds an axis, an int consumes one.
    let mut singles: Vec<Option<Value>> = Vec::with_capacity(items.len());
    for item in items {
        singles.push(match item {
            IndexItem::Single(n) => Some(eval(n, ctx)?),
            _ => None,
        });
    }
    let consuming = items
        .iter()
        .zip(&singles)
        .filter(|(i, v)| match i {
            IndexItem::Ellipsis => false,
            IndexItem::Single(_) => !matches!(v, Some(Value::None)),
            IndexItem::Slice { .. } => true,
        })
        .count();
    if items
        .iter()
        .filter(|i| matches!(i, IndexItem::Ellipsis))
        .count()
        > 1
    {
        return fail(span, "an index can only have a single ellipsis ('...')");
    }
    // Advanced indices (the list and any ints) apart from one another put the list's
    // axis first, as NumPy does (`x[[0, 2], :, 1]` on 3-d is (2, n1)); next to one another
    // they leave it in place.
    let advanced: Vec<usize> = items
        .iter()
        .zip(&singles)
        .enumerate()
        .filter(|(_, (i, v))| matches!(i, IndexItem::Single(_)) && !matches!(v, Some(Value::None)))
        .map(|(k, _)| k)
        .collect();
    let apart = advanced.windows(2).any(|w| w[1] != w[0] + 1);
    let mut listed: Option<Listed> = None;
    let mut select = Vec::new();
    let mut outs = Vec::new();
    for (item, single) in items.iter().zip(singles) {
        let axis = select.len();
        match (item, single) {
            (IndexItem::Single(_), Some(Value::None)) => outs.push(Out::New),
            (IndexItem::Ellipsis, _) => {
                let fill = a.ndim().saturating_sub(consuming);
                for k in 0..fill {
                    select.push(Select::Range(Dim::full(a.shape()[axis + k] as u64)));
                    outs.push(Out::Range { flip: false });
                }
            }
            _ if axis >= a.ndim() => {
                return fail(
                    span,
                    format!("too many indices for an array of {} dimensions", a.ndim()),
                )
            }
            (IndexItem::Single(n), Some(v)) if matches!(n.kind, Kind::List(_)) => {
                if listed.is_some() {
                    return fail(
                        n.span,
                        "only one integer list per index is supported here (NumPy's \
                         pointwise indexing by several lists is not)",
                    );
                }
                let positions = ints_of(&(v, n.span), "an index list").map_err(|e| EvalError {
                    message: format!(
                        "{} (lists of booleans or arrays as indices are not supported)",
                        e.message
                    ),
                    span: e.span,
                })?;
                let out_axis = outs
                    .iter()
                    .filter(|o| matches!(o, Out::Range { .. }))
                    .count();
                listed = Some(Listed {
                    positions,
                    axis,
                    out_axis,
                    span: n.span,
                });
                select.push(Select::Range(Dim::full(a.shape()[axis] as u64)));
                outs.push(Out::Range { flip: false });
            }
            (IndexItem::Single(n), Some(v)) => {
                let i = int_of(&(v, n.span), "an index")?;
                let len = a.shape()[axis] as i64;
                let k = if i < 0 { i + len } else { i };
                if k < 0 || k >= len {
                    return fail(
                        n.span,
                        format!("index {i} is out of bounds for axis {axis} with size {len}"),
                    );
                }
                select.push(Select::Index(k as u64));
            }
            (IndexItem::Slice { start, stop, step }, _) => {
                let (d, flip) = slice_dim(
                    int_at(start)?,
                    int_at(stop)?,
                    int_at(step)?,
                    a.shape()[axis] as u64,
                    span,
                )?;
                select.push(Select::Range(d));
                outs.push(Out::Range { flip });
            }
            (IndexItem::Single(_), None) => unreachable!("singles are evaluated"),
        }
    }
    let sliced = a.slice(&select).map_err(err)?;
    // The sliced array's axes: one per Range item, then the axes no item reached.
    let ranges = outs
        .iter()
        .filter(|o| matches!(o, Out::Range { .. }))
        .count();
    let flips: Vec<usize> = outs
        .iter()
        .filter(|o| matches!(o, Out::Range { .. }))
        .enumerate()
        .filter(|(_, o)| matches!(o, Out::Range { flip: true }))
        .map(|(k, _)| k)
        .collect();
    let mut flipped = sliced.flip(&flips);
    if let Some(l) = &listed {
        flipped = compose::take(&flipped, &l.positions, l.out_axis).map_err(|m| EvalError {
            message: m.replace(
                &format!("axis {} ", l.out_axis),
                &format!("axis {} ", l.axis),
            ),
            span: l.span,
        })?;
    }
    let to_front = |r: Array, at: usize| -> R<Value> {
        if !apart || at == 0 {
            return Ok(Value::Array(r));
        }
        let mut perm: Vec<usize> = (0..r.ndim()).filter(|&k| k != at).collect();
        perm.insert(0, at);
        Ok(Value::Array(r.transpose(Some(&perm)).map_err(err)?))
    };
    if !outs.iter().any(|o| matches!(o, Out::New)) {
        return match &listed {
            Some(l) => to_front(flipped, l.out_axis),
            None => Ok(Value::Array(flipped)),
        };
    }
    let mut next = 0..flipped.ndim();
    let mut map: Vec<Option<usize>> = outs
        .iter()
        .map(|o| match o {
            Out::New => None,
            Out::Range { .. } => next.next(),
        })
        .collect();
    map.extend((ranges..flipped.ndim()).map(Some));
    let regrouped = flipped.regroup(&map).map_err(err)?;
    match &listed {
        Some(l) => {
            let at = map.iter().position(|&m| m == Some(l.out_axis));
            to_front(regrouped, at.expect("the listed axis is kept"))
        }
        None => Ok(Value::Array(regrouped)),
    }
}

/// An integer list in an index: its positions, the input axis it selects on, and that
/// axis's place among the sliced array's axes.
struct Listed {
    positions: Vec<i64>,
    axis: usize,
    out_axis: usize,
    span: Span,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        let mut inputs = HashMap::new();
        inputs.insert(
            "x".to_string(),
            Array::ones(&[6, 4], Some(&[4, 3])).unwrap(),
        );
        Context {
            inputs,
            default_chunks: None,
        }
    }

    #[test]
    fn the_issue_examples_build() {
        let c = ctx();
        for (src, shape) in [
            ("x.mean(axis=0)", vec![4]),
            ("x.sum()", vec![]),
            ("(x.T @ x) - x.mean(axis=0)", vec![4, 4]),
            ("x.dot(x.T + 1)", vec![6, 6]),
            ("mean(x, axis=1)", vec![6]),
            (
                "random((200, 300), chunks=(100, 100), seed=1).std()",
                vec![],
            ),
            ("ones((100,), chunks=(1,)).sum()", vec![]),
            ("x[1:5:2, -1]", vec![2]),
            ("x[..., 0]", vec![6]),
            ("np.sqrt(abs(x)) ** 0.5", vec![6, 4]),
            ("x.astype('f4').var(axis=(0, 1), ddof=1)", vec![]),
            ("arange(10).sum()", vec![]),
            ("x.sum(axis=0, keepdims=True)", vec![1, 4]),
        ] {
            let a = evaluate(src, &c).unwrap_or_else(|e| panic!("{src}: {e}"));
            assert_eq!(a.shape(), shape.as_slice(), "{src}");
        }
        assert_eq!(
            evaluate("x.astype('f4') * 2.5", &c).unwrap().dtype(),
            DType::F32
        );
    }

    /// NEP 50: Python ints are exact and weak. One that the array's type cannot hold is
    /// refused (NumPy 2 raises OverflowError), never wrapped; so is int arithmetic between
    /// Python numbers that leaves 64 bits.
    #[test]
    fn python_ints_are_never_wrapped() {
        let c = ctx();
        let i = "x.astype('i4')";
        for src in [
            format!("{i} + 2147483648"),
            format!("{i} * (2**31)"),
            format!("-2147483649 + {i}"),
            "full((2,), 2**31, dtype='int32')".to_string(),
        ] {
            let e = evaluate(&src, &c).unwrap_err();
            assert!(e.contains("out of bounds for int32"), "{src}: {e}");
        }
        for src in [
            "x + 2**64",
            "x * (9223372036854775807 + 1)",
            "x - 3037000500 * 3037000500",
        ] {
            let e = evaluate(src, &c).unwrap_err();
            assert!(e.contains("does not fit in 64 bits"), "{src}: {e}");
        }
        assert_eq!(
            evaluate(&format!("{i} + 2147483647"), &c).unwrap().dtype(),
            DType::I32
        );
        // -2147483648 fits int32: accepted (the subtraction wraps when run, as in NumPy).
        assert!(evaluate(&format!("{i} - -2147483648"), &c).is_ok());
        assert_eq!(
            evaluate("x.astype('f4') + 2**40", &c).unwrap().dtype(),
            DType::F32
        );
        assert_eq!(
            evaluate("x.astype('i8') + 2**62", &c).unwrap().dtype(),
            DType::I64
        );
    }

    #[test]
    fn errors_point_at_their_place() {
        let c = ctx();
        let e = evaluate("x + y", &c).unwrap_err();
        assert!(e.contains("unknown name 'y'"), "{e}");
        assert!(e.contains("    ^"), "{e}");
        assert!(evaluate("x + x.T", &c).unwrap_err().contains("broadcast"));
        assert!(evaluate("x.mean(axis=2)", &c)
            .unwrap_err()
            .contains("out of bounds"));
        assert!(evaluate("x.sum(axes=0)", &c)
            .unwrap_err()
            .contains("unexpected keyword"));
        assert!(evaluate("1 + 2", &c).unwrap_err().contains("not an array"));
        assert!(evaluate("x[::0]", &c)
            .unwrap_err()
            .contains("slice step cannot be zero"));
        assert!(evaluate("x[None, 0, None, 0, 0]", &c)
            .unwrap_err()
            .contains("too many indices"));
        assert!(evaluate("x.astype('u8')", &c)
            .unwrap_err()
            .contains("unsupported dtype"));
    }
}
