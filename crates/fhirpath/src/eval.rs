//! Evaluation of parsed FHIRPath over `serde_json::Value`, with element types taken from
//! the R4 definitions so that choice elements and type tests work as in the spec.

use std::cell::{Cell, RefCell};
use std::cmp::Ordering;

use fhir_spec::{TypeDef, TypeKind, spec};
use serde_json::Value;

use crate::quantity::{self, Dec};
use crate::regex::Regex;
use crate::temporal::{self, Kind, Temporal};
use crate::{Error, Expr, text};

/// What we know of an item's FHIR type.
#[derive(Debug, Clone)]
enum TypeRef {
    Unknown,
    /// A data type or resource type name (`Quantity`, `string`, `Patient`).
    Named(String),
    /// An inline backbone element: its owning type and relative path.
    Backbone(&'static TypeDef, String),
}

/// One item of a FHIRPath collection.
#[derive(Debug, Clone)]
pub enum Item<'a> {
    /// A node of the resource, with its FHIR type where known.
    Node(&'a Value, ItemType<'a>),
    Str(String),
    Bool(bool),
    Num(String),
    /// A date/time literal (`@2020-01-01`), without the `@`.
    Date(String),
    /// A System.Quantity: value text and unit (UCUM code or calendar keyword).
    Quantity(String, String),
    /// The result of `type()`: namespace and name.
    TypeInfo(String, String),
}

/// The FHIR type of a node (opaque; ask with [`Item::type_name`]), with the extensions
/// and id of a primitive (its `_name` sibling in JSON).
#[derive(Debug, Clone)]
pub struct ItemType<'a>(TypeRef, Option<&'a Value>);

/// The value of a primitive that only has extensions (`"given": [null]`).
static NULL: Value = Value::Null;

impl std::fmt::Display for Item<'_> {
    /// The FHIRPath string form (`toString()`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Item::Node(Value::String(s), _) => f.write_str(s),
            Item::Node(v, _) => write!(f, "{v}"),
            Item::Str(s) | Item::Num(s) | Item::Date(s) => f.write_str(s),
            Item::Bool(b) => write!(f, "{b}"),
            Item::Quantity(v, u) if quantity::is_calendar_word(u) => write!(f, "{v} {u}"),
            Item::Quantity(v, u) => write!(f, "{v} '{u}'"),
            Item::TypeInfo(ns, n) => write!(f, "{ns}.{n}"),
        }
    }
}

impl<'a> Item<'a> {
    /// The JSON node, for items that are part of the resource.
    pub fn node(&self) -> Option<&'a Value> {
        match self {
            Item::Node(v, _) => Some(v),
            _ => None,
        }
    }

    /// The FHIR type name (`Coding`, `string`, `Patient`) where known.
    pub fn type_name(&self) -> Option<&str> {
        match self {
            Item::Node(_, ItemType(TypeRef::Named(n), _)) => Some(n),
            Item::Node(_, ItemType(TypeRef::Backbone(..), _)) => Some("BackboneElement"),
            Item::Node(_, ItemType(TypeRef::Unknown, _)) => None,
            Item::Str(_) => Some("string"),
            Item::Bool(_) => Some("boolean"),
            Item::Num(n) if n.contains('.') => Some("decimal"),
            Item::Num(_) => Some("integer"),
            Item::Date(d) if d.starts_with('T') => Some("time"),
            Item::Date(d) if d.contains('T') => Some("dateTime"),
            Item::Date(_) => Some("date"),
            Item::Quantity(..) => Some("Quantity"),
            Item::TypeInfo(..) => Some("TypeInfo"),
        }
    }

    /// Whether child element `name` of this node repeats, per the definitions.
    pub fn child_repeats(&self, name: &str) -> Option<bool> {
        let Item::Node(v, ItemType(ty, _)) = self else {
            return None;
        };
        let (td, path) = match ty {
            TypeRef::Named(n) => {
                let n = if n == "Resource" { v.get("resourceType").and_then(Value::as_str).unwrap_or(n) } else { n };
                (spec().type_def(n)?, name.to_string())
            }
            TypeRef::Backbone(t, p) => (*t, format!("{p}.{name}")),
            TypeRef::Unknown => return None,
        };
        td.element(&path).map(|e| e.is_array())
    }

    fn as_bool(&self) -> Option<bool> {
        match self {
            Item::Bool(b) => Some(*b),
            Item::Node(Value::Bool(b), _) => Some(*b),
            _ => None,
        }
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Item::Str(s) | Item::Date(s) => Some(s),
            Item::Node(Value::String(s), _) => Some(s),
            _ => None,
        }
    }

    /// The FHIRPath type: namespace and name.
    fn fhirpath_type(&self) -> Option<(&'static str, String)> {
        Some(match self {
            Item::Node(v, ItemType(TypeRef::Named(n), _)) => {
                let n = if n == "Resource" { v.get("resourceType").and_then(Value::as_str).unwrap_or(n) } else { n };
                ("FHIR", n.to_string())
            }
            Item::Node(_, ItemType(TypeRef::Backbone(..), _)) => ("FHIR", "BackboneElement".into()),
            Item::Node(..) => return None,
            Item::Str(_) => ("System", "String".into()),
            Item::Bool(_) => ("System", "Boolean".into()),
            Item::Num(n) if n.contains('.') => ("System", "Decimal".into()),
            Item::Num(_) => ("System", "Integer".into()),
            Item::Date(d) if d.starts_with('T') => ("System", "Time".into()),
            Item::Date(d) if d.contains('T') => ("System", "DateTime".into()),
            Item::Date(_) => ("System", "Date".into()),
            Item::Quantity(..) => ("System", "Quantity".into()),
            Item::TypeInfo(..) => ("System", "TypeInfo".into()),
        })
    }
}

/// What kind of value an item is, for operators.
#[derive(Debug, Clone, PartialEq)]
enum Val {
    Bool(bool),
    Num(String),
    Str(String),
    Time(Temporal),
    Qty(f64, String, Option<Dec>),
    /// A complex node (compared structurally).
    Other,
}

fn val(item: &Item<'_>) -> Val {
    match item {
        Item::Bool(b) => Val::Bool(*b),
        Item::Num(n) => Val::Num(n.clone()),
        Item::Str(s) => Val::Str(s.clone()),
        Item::Date(d) => Temporal::parse(d, false).map_or_else(|| Val::Str(d.clone()), Val::Time),
        Item::Quantity(v, u) => Val::Qty(v.parse().unwrap_or(f64::NAN), u.clone(), Dec::parse(v)),
        Item::TypeInfo(..) => Val::Other,
        Item::Node(v, _) => match v {
            Value::Bool(b) => Val::Bool(*b),
            Value::Number(n) => Val::Num(n.to_string()),
            Value::String(s) => match item.type_name() {
                Some("date") => Temporal::parse(s, false).map_or_else(|| Val::Str(s.clone()), Val::Time),
                Some("dateTime" | "instant") => Temporal::parse(s, false).map_or_else(
                    || Val::Str(s.clone()),
                    |mut t| {
                        t.kind = Kind::DateTime;
                        Val::Time(t)
                    },
                ),
                Some("time") => Temporal::parse(s, true).map_or_else(|| Val::Str(s.clone()), Val::Time),
                _ => Val::Str(s.clone()),
            },
            Value::Object(_) if is_type(item, "Quantity") => match v.get("value") {
                Some(Value::Number(n)) => {
                    let unit = v.get("code").or_else(|| v.get("unit")).and_then(Value::as_str).unwrap_or("1");
                    let text = n.to_string();
                    Val::Qty(text.parse().unwrap_or(f64::NAN), unit.to_string(), Dec::parse(&text))
                }
                _ => Val::Other,
            },
            _ => Val::Other,
        },
    }
}

/// The environment of an evaluation: `%resource`, `%rootResource` and `%context`, and
/// the iteration variables `$index` and `$total`.
struct Env<'a> {
    resource: Item<'a>,
    root_resource: Item<'a>,
    context: Item<'a>,
    index: Cell<usize>,
    total: RefCell<Vec<Item<'a>>>,
}

impl<'a> Env<'a> {
    fn new(resource: Item<'a>, root_resource: Item<'a>, context: Item<'a>) -> Env<'a> {
        Env { resource, root_resource, context, index: Cell::new(0), total: RefCell::new(Vec::new()) }
    }
}

fn resource_item(resource: &Value) -> Item<'_> {
    let ty = match resource.get("resourceType").and_then(Value::as_str) {
        Some(rt) => TypeRef::Named(rt.to_string()),
        None => TypeRef::Unknown,
    };
    Item::Node(resource, ItemType(ty, None))
}

/// Evaluate `expr` with `resource` as the context.
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Result<Vec<Item<'a>>, Error> {
    let root = resource_item(resource);
    let env = Env::new(root.clone(), root.clone(), root.clone());
    eval(expr, &[root], true, &env)
}

/// Evaluate `expr` on an element of `resource`: `node` is an instance of the element at
/// relative path `path` of type `owner` (`""` for the type itself), as for invariants.
/// `root_resource` is the container when `resource` is a contained resource.
pub fn evaluate_on<'a>(
    expr: &Expr,
    node: &'a Value,
    owner: &str,
    path: &str,
    resource: &'a Value,
    root_resource: &'a Value,
) -> Result<Vec<Item<'a>>, Error> {
    let ty = match spec().type_def(owner) {
        Some(td) if !path.is_empty() => TypeRef::Backbone(td, path.to_string()),
        Some(_) => match node.get("resourceType").and_then(Value::as_str) {
            Some(rt) => TypeRef::Named(rt.to_string()),
            None => TypeRef::Named(owner.to_string()),
        },
        None => TypeRef::Unknown,
    };
    let context = Item::Node(node, ItemType(ty, None));
    let env = Env::new(resource_item(resource), resource_item(root_resource), context.clone());
    eval(expr, &[context], true, &env)
}

/// Evaluate `expr` with an item of an earlier evaluation on `resource` as the context
/// (components of composite search parameters).
pub fn evaluate_item<'a>(expr: &Expr, item: &Item<'a>, resource: &'a Value) -> Result<Vec<Item<'a>>, Error> {
    let env = Env::new(resource_item(resource), resource_item(resource), item.clone());
    eval(expr, std::slice::from_ref(item), true, &env)
}

fn semantic(msg: impl Into<String>) -> Error {
    Error::Semantic(msg.into())
}

/// The single item of an operand, `None` when empty, an error when several.
fn single<'b, 'a>(items: &'b [Item<'a>], what: &str) -> Result<Option<&'b Item<'a>>, Error> {
    match items {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(semantic(format!("{what} expects a single item, got {}", items.len()))),
    }
}

fn eval<'a>(expr: &Expr, input: &[Item<'a>], at_root: bool, env: &Env<'a>) -> Result<Vec<Item<'a>>, Error> {
    Ok(match expr {
        Expr::This => input.to_vec(),
        Expr::Date(d) => {
            if Temporal::parse(d, false).is_none() {
                return Err(semantic(format!("invalid date/time literal @{d}")));
            }
            vec![Item::Date(d.clone())]
        }
        Expr::Quantity(v, u) => vec![Item::Quantity(v.clone(), u.clone())],
        Expr::Empty => vec![],
        Expr::Var(v) => match v.as_str() {
            "resource" => vec![env.resource.clone()],
            "rootResource" => vec![env.root_resource.clone()],
            "context" => vec![env.context.clone()],
            "ucum" => vec![Item::Str("http://unitsofmeasure.org".into())],
            "sct" => vec![Item::Str("http://snomed.info/sct".into())],
            "loinc" => vec![Item::Str("http://loinc.org".into())],
            "$index" => vec![Item::Num(env.index.get().to_string())],
            "$total" => env.total.borrow().clone(),
            other => {
                if let Some(name) = other.strip_prefix("vs-") {
                    vec![Item::Str(format!("http://hl7.org/fhir/ValueSet/{name}"))]
                } else if let Some(name) = other.strip_prefix("ext-") {
                    vec![Item::Str(format!("http://hl7.org/fhir/StructureDefinition/{name}"))]
                } else {
                    return Err(Error::Unsupported(format!("%{other}")));
                }
            }
        },
        Expr::Neg(e) => eval(e, input, at_root, env)?
            .into_iter()
            .map(|i| match val(&i) {
                Val::Num(n) => Ok(Item::Num(match n.strip_prefix('-') {
                    Some(pos) => pos.to_string(),
                    None if n.bytes().all(|b| b == b'0' || b == b'.') => n,
                    None => format!("-{n}"),
                })),
                Val::Qty(_, u, Some(d)) => Ok(Item::Quantity(d.neg().render(), u)),
                _ => Err(semantic("unary minus on a non-number")),
            })
            .collect::<Result<_, _>>()?,
        Expr::Str(s) => vec![Item::Str(s.clone())],
        Expr::Num(n) => vec![Item::Num(n.clone())],
        Expr::Bool(b) => vec![Item::Bool(*b)],
        Expr::Ident(name) => {
            let is_type_name = name.starts_with(|c: char| c.is_ascii_uppercase());
            if is_type_name
                && (at_root || input.iter().all(|i| matches!(i, Item::Node(v, _) if v.get("resourceType").is_some())))
            {
                input.iter().filter(|i| is_type(i, name)).cloned().collect()
            } else {
                members(input, name, at_root)?
            }
        }
        Expr::Member(base, name) => {
            // `(x as T).name`: the static type T must have the element
            if let Expr::Type(op, _, ty) = base.as_ref()
                && op == "as"
                && let Some(td) = spec().type_def(split_type(ty).1)
                && td.kind != TypeKind::Primitive
                && !td.is_abstract
                && td.element(name).is_none()
            {
                return Err(semantic(format!("{UNKNOWN_ELEMENT} '{name}' of {}", td.name)));
            }
            let items = eval(base, input, at_root, env)?;
            members(&items, name, typed_path(base, at_root))?
        }
        Expr::Index(base, idx) => {
            let items = eval(base, input, at_root, env)?;
            let idx = eval(idx, input, at_root, env)?;
            let n = match idx.first() {
                Some(Item::Num(n)) => n.parse::<usize>().ok(),
                _ => None,
            };
            n.and_then(|n| items.get(n).cloned()).into_iter().collect()
        }
        Expr::Type(op, base, ty) => {
            check_type_name(ty)?;
            let items = eval(base, input, at_root, env)?;
            if op == "as" {
                items.into_iter().filter(|i| is_type(i, ty)).collect()
            } else {
                match single(&items, "'is'")? {
                    None => vec![],
                    Some(one) => vec![Item::Bool(is_type(one, ty))],
                }
            }
        }
        Expr::Binary(op, a, b) => {
            let l = eval(a, input, at_root, env)?;
            // `implies`, `and`, `or` short-circuit on the left operand
            if op == "implies" && singleton_bool(&l)? == Some(false) {
                return Ok(vec![Item::Bool(true)]);
            }
            let r = eval(b, input, at_root, env)?;
            binary(op, l, r)?
        }
        Expr::Call(base, func, args) => {
            let items = eval(base, input, at_root, env)?;
            call(func, items, args, input, at_root, env)?
        }
    })
}

fn binary<'a>(op: &str, l: Vec<Item<'a>>, r: Vec<Item<'a>>) -> Result<Vec<Item<'a>>, Error> {
    Ok(match op {
        "|" => {
            let mut out: Vec<Item<'a>> = Vec::with_capacity(l.len() + r.len());
            for item in l.into_iter().chain(r) {
                if !out.iter().any(|o| same(o, &item)) {
                    out.push(item);
                }
            }
            out
        }
        "=" | "!=" => match (l.as_slice(), r.as_slice()) {
            ([], _) | (_, []) => vec![],
            _ => {
                let eq = if l.len() != r.len() {
                    Some(false)
                } else {
                    let mut acc = Some(true);
                    for (x, y) in l.iter().zip(&r) {
                        match equal(x, y) {
                            Some(true) => {}
                            Some(false) => {
                                acc = Some(false);
                                break;
                            }
                            None => acc = None,
                        }
                    }
                    acc
                };
                eq.map(|e| Item::Bool(e == (op == "="))).into_iter().collect()
            }
        },
        "~" | "!~" => {
            let eq = l.len() == r.len() && {
                let mut used = vec![false; r.len()];
                l.iter().all(|x| {
                    let found = r.iter().enumerate().find(|(i, y)| !used[*i] && equivalent(x, y));
                    found.map(|(i, _)| used[i] = true).is_some()
                })
            };
            vec![Item::Bool(eq == (op == "~"))]
        }
        "and" | "or" | "xor" | "implies" => {
            let (lb, rb) = (singleton_bool(&l)?, singleton_bool(&r)?);
            let v = match op {
                "and" => match (lb, rb) {
                    (Some(false), _) | (_, Some(false)) => Some(false),
                    (Some(true), Some(true)) => Some(true),
                    _ => None,
                },
                "or" => match (lb, rb) {
                    (Some(true), _) | (_, Some(true)) => Some(true),
                    (Some(false), Some(false)) => Some(false),
                    _ => None,
                },
                "xor" => lb.zip(rb).map(|(a, b)| a != b),
                _ => match (lb, rb) {
                    (Some(true), Some(b)) => Some(b),
                    (Some(false), _) => Some(true),
                    (None, Some(true)) => Some(true),
                    _ => None,
                },
            };
            v.map(Item::Bool).into_iter().collect()
        }
        "in" | "contains" => {
            let (needle, hay) = if op == "in" { (&l, &r) } else { (&r, &l) };
            match single(needle, op)? {
                None => vec![],
                Some(one) => vec![Item::Bool(hay.iter().any(|h| equal(h, one) == Some(true)))],
            }
        }
        "<" | ">" | "<=" | ">=" => match (single(&l, op)?, single(&r, op)?) {
            (Some(a), Some(b)) => match compare(a, b)? {
                Some(ord) => vec![Item::Bool(match op {
                    "<" => ord.is_lt(),
                    ">" => ord.is_gt(),
                    "<=" => ord.is_le(),
                    _ => ord.is_ge(),
                })],
                None => vec![],
            },
            _ => vec![],
        },
        "&" => {
            let s = |v: &[Item<'_>]| -> Result<String, Error> {
                Ok(single(v, "'&'")?.map(|i| i.to_string()).unwrap_or_default())
            };
            vec![Item::Str(s(&l)? + &s(&r)?)]
        }
        "+" | "-" | "*" | "/" | "div" | "mod" => match (single(&l, op)?, single(&r, op)?) {
            (Some(a), Some(b)) => arithmetic(op, a, b)?.into_iter().collect(),
            _ => vec![],
        },
        other => return Err(Error::Unsupported(other.to_string())),
    })
}

/// `+ - * / div mod` on two single items.
fn arithmetic<'a>(op: &str, a: &Item<'a>, b: &Item<'a>) -> Result<Option<Item<'a>>, Error> {
    let bad = || semantic(format!("'{op}' cannot combine {} and {}", describe(a), describe(b)));
    Ok(match (val(a), val(b)) {
        (Val::Str(x), Val::Str(y)) if op == "+" => Some(Item::Str(x + &y)),
        (Val::Num(x), Val::Num(y)) => {
            let decimal = x.contains('.') || y.contains('.');
            let (dx, dy) = (Dec::parse(&x), Dec::parse(&y));
            let (fx, fy) = (x.parse::<f64>().unwrap_or(f64::NAN), y.parse::<f64>().unwrap_or(f64::NAN));
            match op {
                "+" | "-" | "*" => {
                    let exact = dx.zip(dy).and_then(|(p, q)| match op {
                        "+" => p.add(q),
                        "-" => p.add(q.neg()),
                        _ => p.mul(q),
                    });
                    match exact {
                        Some(d) => Some(Item::Num(d.render())),
                        None => {
                            let v = match op {
                                "+" => fx + fy,
                                "-" => fx - fy,
                                _ => fx * fy,
                            };
                            v.is_finite().then(|| Item::Num(fmt_num(v, decimal)))
                        }
                    }
                }
                "/" => {
                    let v = fx / fy;
                    v.is_finite().then(|| Item::Num(fmt_num(v, true)))
                }
                "div" => {
                    let v = (fx / fy).trunc();
                    v.is_finite().then(|| Item::Num(fmt_num(v, false)))
                }
                _ => match dx.zip(dy) {
                    Some((p, q)) => p.rem(q).map(|d| Item::Num(d.render())),
                    None => {
                        let v = fx % fy;
                        v.is_finite().then(|| Item::Num(fmt_num(v, decimal)))
                    }
                },
            }
        }
        (Val::Time(t), Val::Qty(v, u, _)) if op == "+" || op == "-" => {
            let unit = temporal::Unit::of(&u).ok_or_else(bad)?;
            let amount = v.trunc() as i64;
            let amount = if op == "-" { -amount } else { amount };
            t.add(amount, unit).map(|t| Item::Date(t.render()))
        }
        (Val::Qty(x, ux, dx), Val::Qty(y, uy, _)) => match op {
            "+" | "-" => {
                let y = quantity::convert(y, &uy, &ux).ok_or_else(bad)?;
                let v = if op == "+" { x + y } else { x - y };
                let scale = dx.map_or(0, Dec::scale).max(if v.fract() == 0.0 { 0 } else { 6 });
                Some(Item::Quantity(quantity::round_to(v, scale), ux))
            }
            "*" | "/" => {
                let (cx, cy) = (quantity::canonical(&ux).ok_or_else(bad)?, quantity::canonical(&uy).ok_or_else(bad)?);
                let mut dims = cx.dims;
                for (d, e) in dims.iter_mut().zip(cy.dims) {
                    if op == "*" {
                        *d += e;
                    } else {
                        *d -= e;
                    }
                }
                let v = if op == "*" { x * cx.factor * y * cy.factor } else { x * cx.factor / (y * cy.factor) };
                v.is_finite().then(|| Item::Quantity(fmt_num(v, true), quantity::dims_unit(&dims)))
            }
            _ => return Err(bad()),
        },
        (Val::Qty(x, u, _), Val::Num(n)) if op == "*" || op == "/" => {
            let n: f64 = n.parse().unwrap_or(f64::NAN);
            let v = if op == "*" { x * n } else { x / n };
            v.is_finite().then(|| Item::Quantity(fmt_num(v, true), u))
        }
        (Val::Num(n), Val::Qty(x, u, _)) if op == "*" => {
            let v = n.parse::<f64>().unwrap_or(f64::NAN) * x;
            v.is_finite().then(|| Item::Quantity(fmt_num(v, true), u))
        }
        _ => return Err(bad()),
    })
}

fn describe(i: &Item<'_>) -> String {
    i.fhirpath_type().map_or_else(|| "an untyped node".into(), |(ns, n)| format!("{ns}.{n}"))
}

/// `=`: `None` when the result is unknown (dates at different precisions).
fn equal(a: &Item<'_>, b: &Item<'_>) -> Option<bool> {
    Some(match (val(a), val(b)) {
        (Val::Bool(x), Val::Bool(y)) => x == y,
        (Val::Num(x), Val::Num(y)) => match (Dec::parse(&x), Dec::parse(&y)) {
            (Some(p), Some(q)) => {
                p.add(q.neg()).is_some_and(|d| d.render().bytes().all(|c| matches!(c, b'0' | b'.' | b'-')))
            }
            _ => x.parse::<f64>().ok() == y.parse::<f64>().ok(),
        },
        (Val::Str(x), Val::Str(y)) => x == y,
        (Val::Time(x), Val::Time(y)) => {
            if (x.kind == Kind::Time) != (y.kind == Kind::Time) {
                return Some(false);
            }
            x.compare(&y)?.is_eq()
        }
        (Val::Time(x), Val::Str(s)) | (Val::Str(s), Val::Time(x)) => match Temporal::parse(&s, x.kind == Kind::Time) {
            Some(y) => x.compare(&y)?.is_eq(),
            None => false,
        },
        (Val::Qty(x, ux, _), Val::Qty(y, uy, _)) => quantity::compare((x, &ux), (y, &uy))?.is_eq(),
        (Val::Other, Val::Other) => match (a, b) {
            (Item::Node(x, _), Item::Node(y, _)) => x == y,
            (Item::TypeInfo(p, q), Item::TypeInfo(r, s)) => p == r && q == s,
            _ => false,
        },
        _ => false,
    })
}

/// Round a decimal's text half-up to `scale` digits.
fn round_dec(d: Dec, scale: u32) -> String {
    quantity::round_to(d.to_f64(), scale)
}

/// `~`: equality ignoring case, white space and extra precision.
fn equivalent(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (val(a), val(b)) {
        (Val::Str(x), Val::Str(y)) => {
            let norm = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
            norm(&x) == norm(&y)
        }
        (Val::Num(x), Val::Num(y)) => match (Dec::parse(&x), Dec::parse(&y)) {
            (Some(p), Some(q)) => {
                let s = p.scale().min(q.scale());
                round_dec(p, s) == round_dec(q, s)
            }
            _ => false,
        },
        (Val::Time(x), Val::Time(y)) => x.equivalent(&y),
        (Val::Qty(x, ux, dx), Val::Qty(y, uy, dy)) => match quantity::convert(y, &uy, &ux) {
            Some(y) => {
                let s = dx.map_or(0, Dec::scale).min(dy.map_or(0, Dec::scale));
                quantity::round_to(x, s) == quantity::round_to(y, s)
            }
            None => false,
        },
        _ => equal(a, b) == Some(true),
    }
}

/// Order two singletons: numbers numerically, dates and times at equal precision,
/// strings lexically, quantities in comparable units. `Ok(None)` when FHIRPath says the
/// result is empty; an error for values of different types.
fn compare(a: &Item<'_>, b: &Item<'_>) -> Result<Option<Ordering>, Error> {
    Ok(match (val(a), val(b)) {
        (Val::Num(x), Val::Num(y)) => {
            x.parse::<f64>().ok().zip(y.parse::<f64>().ok()).and_then(|(p, q)| p.partial_cmp(&q))
        }
        (Val::Str(x), Val::Str(y)) => Some(x.cmp(&y)),
        (Val::Time(x), Val::Time(y)) => x.compare(&y),
        (Val::Time(x), Val::Str(s)) => Temporal::parse(&s, x.kind == Kind::Time).and_then(|y| x.compare(&y)),
        (Val::Str(s), Val::Time(y)) => Temporal::parse(&s, y.kind == Kind::Time).and_then(|x| x.compare(&y)),
        (Val::Qty(x, ux, _), Val::Qty(y, uy, _)) => quantity::compare((x, &ux), (y, &uy)),
        _ => return Err(semantic(format!("cannot compare {} with {}", describe(a), describe(b)))),
    })
}

/// A collection as a boolean: empty is unknown, a single boolean is itself, any other
/// single item is true; several items are an error.
fn singleton_bool(items: &[Item<'_>]) -> Result<Option<bool>, Error> {
    match items {
        [] => Ok(None),
        [one] => Ok(Some(one.as_bool().unwrap_or(true))),
        _ => Err(semantic(format!("expected a single boolean, got {} items", items.len()))),
    }
}

/// Lenient form for criteria (`where`, `exists`, `all`): several items count as true.
fn criteria_bool(items: &[Item<'_>]) -> Option<bool> {
    match items {
        [] => None,
        [one] => Some(one.as_bool().unwrap_or(true)),
        _ => Some(true),
    }
}

fn same(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a, b) {
        (Item::Node(x, ItemType(_, ex)), Item::Node(y, ItemType(_, ey))) => {
            std::ptr::eq(*x, *y)
                && match (ex, ey) {
                    (Some(p), Some(q)) => std::ptr::eq(*p, *q),
                    (None, None) => true,
                    _ => false,
                }
        }
        _ => equal(a, b) == Some(true),
    }
}

/// Is `name` a type FHIRPath knows (System or FHIR)?
fn check_type_name(name: &str) -> Result<(), Error> {
    let (ns, n) = split_type(name);
    let system = matches!(n, "Boolean" | "String" | "Integer" | "Decimal" | "Date" | "DateTime" | "Time" | "Quantity");
    let fhir = spec().type_def(n).is_some() || spec().resource_type(n).is_some();
    let ok = match ns {
        // an unknown System type is simply never matched
        Some("System") => true,
        Some("FHIR") => fhir,
        _ => system || fhir,
    };
    if ok { Ok(()) } else { Err(semantic(format!("unknown type {name}"))) }
}

fn split_type(ty: &str) -> (Option<&str>, &str) {
    match ty.split_once('.') {
        Some((ns @ ("System" | "FHIR"), n)) => (Some(ns), n),
        _ => (None, ty),
    }
}

#[allow(clippy::too_many_lines)]
fn call<'a>(
    func: &str,
    items: Vec<Item<'a>>,
    args: &[Expr],
    focus: &[Item<'a>],
    at_root: bool,
    env: &Env<'a>,
) -> Result<Vec<Item<'a>>, Error> {
    // a plain argument is evaluated once, against the focus of the calling expression
    let arg = |i: usize| -> Result<Vec<Item<'a>>, Error> {
        match args.get(i) {
            Some(a) => eval(a, focus, at_root, env),
            None => Err(semantic(format!("{func}() needs an argument"))),
        }
    };
    let arg_str = |i: usize| -> Result<Option<String>, Error> {
        Ok(single(&arg(i)?, func)?.and_then(|x| x.as_str().map(str::to_string)))
    };
    let arg_int = |i: usize| -> Result<Option<i64>, Error> {
        match single(&arg(i)?, func)?.map(val) {
            None => Ok(None),
            Some(Val::Num(n)) => Ok(n.parse::<f64>().ok().map(|f| f as i64)),
            Some(_) => Err(semantic(format!("{func}() expects an integer argument"))),
        }
    };
    // the single string input of a string function (empty input: empty result)
    let input_str = || -> Result<Option<String>, Error> {
        match single(&items, func)? {
            None => Ok(None),
            Some(one) => match (one.as_str(), one) {
                (Some(s), _) => Ok(Some(s.to_string())),
                (None, Item::Node(Value::Null, _)) => Ok(None),
                _ => Err(semantic(format!("{func}() expects a string, got {}", describe(one)))),
            },
        }
    };
    let type_arg = || match args.first() {
        Some(Expr::Ident(t)) => check_type_name(t).map(|()| t.clone()),
        _ => Err(semantic(format!("{func}() without a type argument"))),
    };
    // evaluate `e` once per item with `$this` and `$index` set
    let per_item = |e: &Expr, item: &Item<'a>, i: usize| -> Result<Vec<Item<'a>>, Error> {
        let saved = env.index.replace(i);
        let r = eval(e, std::slice::from_ref(item), false, env);
        env.index.set(saved);
        r
    };
    Ok(match func {
        "where" => {
            let pred = args.first().ok_or_else(|| semantic("where() without criteria"))?;
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                if criteria_bool(&per_item(pred, &item, i)?) == Some(true) {
                    out.push(item);
                }
            }
            out
        }
        "exists" => {
            let n = match args.first() {
                Some(_) => call("where", items, args, focus, at_root, env)?.len(),
                None => items.len(),
            };
            vec![Item::Bool(n > 0)]
        }
        "empty" => vec![Item::Bool(items.is_empty())],
        "not" => singleton_bool(&items)?.map(|b| Item::Bool(!b)).into_iter().collect(),
        "first" => items.into_iter().take(1).collect(),
        "last" => items.into_iter().last().into_iter().collect(),
        // `as()` filters like `ofType()`, as the base invariants (dom-3) need
        "ofType" | "as" => {
            let t = type_arg()?;
            items.into_iter().filter(|i| is_type(i, &t)).collect()
        }
        "is" => {
            let t = type_arg()?;
            single(&items, func)?.map(|i| Item::Bool(is_type(i, &t))).into_iter().collect()
        }
        "type" => {
            items.iter().filter_map(|i| i.fhirpath_type().map(|(ns, n)| Item::TypeInfo(ns.to_string(), n))).collect()
        }
        "conformsTo" => {
            let url = arg_str(0)?.unwrap_or_default();
            let Some(ty) = url.strip_prefix("http://hl7.org/fhir/StructureDefinition/") else {
                return Err(Error::Unsupported(format!("conformsTo('{url}')")));
            };
            items.iter().map(|i| Item::Bool(is_type(i, &format!("FHIR.{ty}")))).collect()
        }
        "resolve" => items.iter().filter_map(resolve).collect(),
        "extension" => {
            let url = arg_str(0)?.unwrap_or_default();
            let mut out = Vec::new();
            for e in members(&items, "extension", false)? {
                if e.node().and_then(|n| n.get("url")).and_then(Value::as_str) == Some(url.as_str()) {
                    out.push(e);
                }
            }
            out
        }
        "count" => vec![Item::Num(items.len().to_string())],
        "all" => {
            let pred = args.first().ok_or_else(|| semantic("all() without criteria"))?;
            let mut ok = true;
            for (i, item) in items.iter().enumerate() {
                if criteria_bool(&per_item(pred, item, i)?) != Some(true) {
                    ok = false;
                    break;
                }
            }
            vec![Item::Bool(ok)]
        }
        "select" => {
            let proj = args.first().ok_or_else(|| semantic("select() without projection"))?;
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                out.extend(per_item(proj, item, i)?);
            }
            out
        }
        "repeat" => {
            let proj = args.first().ok_or_else(|| semantic("repeat() without projection"))?;
            let mut out: Vec<Item<'a>> = Vec::new();
            let mut frontier = items;
            while !frontier.is_empty() {
                let mut next = Vec::new();
                for (i, item) in frontier.iter().enumerate() {
                    for r in per_item(proj, item, i)? {
                        if !out.iter().any(|o| same(o, &r)) {
                            out.push(r.clone());
                            next.push(r);
                        }
                    }
                }
                frontier = next;
            }
            out
        }
        "aggregate" => {
            let agg = args.first().ok_or_else(|| semantic("aggregate() without an aggregator"))?;
            let init = if args.len() > 1 { arg(1)? } else { vec![] };
            let saved = env.total.replace(init);
            let mut result = Ok(());
            for (i, item) in items.iter().enumerate() {
                match per_item(agg, item, i) {
                    Ok(t) => {
                        env.total.replace(t);
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            let total = env.total.replace(saved);
            result?;
            total
        }
        "sort" => {
            let mut keyed: Vec<(Vec<Option<Item<'a>>>, Item<'a>)> = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let mut keys = Vec::new();
                if args.is_empty() {
                    keys.push(Some(item.clone()));
                }
                for a in args {
                    let e = match a {
                        Expr::Neg(inner) => inner,
                        other => other,
                    };
                    keys.push(single(&per_item(e, &item, i)?, "sort key")?.cloned());
                }
                keyed.push((keys, item));
            }
            let mut failed = None;
            keyed.sort_by(|(ka, _), (kb, _)| {
                for (n, (x, y)) in ka.iter().zip(kb).enumerate() {
                    let desc = matches!(args.get(n), Some(Expr::Neg(_)));
                    // empty keys sort first in either direction
                    let ord = match (x, y) {
                        (None, None) => Ordering::Equal,
                        (None, Some(_)) => Ordering::Less,
                        (Some(_), None) => Ordering::Greater,
                        (Some(p), Some(q)) => {
                            let o = match compare(p, q) {
                                Ok(o) => o.unwrap_or(Ordering::Equal),
                                Err(e) => {
                                    failed = Some(e);
                                    Ordering::Equal
                                }
                            };
                            if desc { o.reverse() } else { o }
                        }
                    };
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                Ordering::Equal
            });
            if let Some(e) = failed {
                return Err(e);
            }
            keyed.into_iter().map(|(_, i)| i).collect()
        }
        "isDistinct" => {
            let distinct =
                items.iter().enumerate().all(|(i, a)| items.iter().skip(i + 1).all(|b| equal(a, b) != Some(true)));
            vec![Item::Bool(distinct)]
        }
        "distinct" => distinct(items),
        "hasValue" => vec![Item::Bool(
            matches!(
                items.as_slice(),
                [Item::Node(v, _)] if !v.is_object() && !v.is_array() && !v.is_null()
            ) || matches!(items.as_slice(), [Item::Str(_) | Item::Num(_) | Item::Bool(_) | Item::Date(_)]),
        )],
        "trace" => items,
        "single" => match items.len() {
            0 | 1 => items,
            _ => return Err(semantic("single() on several items")),
        },
        "tail" => items.into_iter().skip(1).collect(),
        "skip" => {
            let n = arg_int(0)?.unwrap_or(0).max(0) as usize;
            items.into_iter().skip(n).collect()
        }
        "take" => {
            let n = arg_int(0)?.unwrap_or(0).max(0) as usize;
            items.into_iter().take(n).collect()
        }
        "children" => items.iter().flat_map(children).collect(),
        "descendants" => {
            let mut out = Vec::new();
            let mut frontier: Vec<Item<'a>> = items.iter().flat_map(children).collect();
            while !frontier.is_empty() {
                let next: Vec<Item<'a>> = frontier.iter().flat_map(children).collect();
                out.extend(frontier);
                frontier = next;
            }
            out
        }
        "combine" => {
            let mut out = items;
            out.extend(arg(0)?);
            out
        }
        "union" => {
            let mut all = items;
            all.extend(arg(0)?);
            distinct(all)
        }
        "intersect" => {
            let other = arg(0)?;
            let mut out: Vec<Item<'a>> = Vec::new();
            for i in items {
                if other.iter().any(|o| equal(o, &i) == Some(true)) && !out.iter().any(|o| equal(o, &i) == Some(true)) {
                    out.push(i);
                }
            }
            out
        }
        "exclude" => {
            let other = arg(0)?;
            items.into_iter().filter(|i| !other.iter().any(|o| equal(o, i) == Some(true))).collect()
        }
        "subsetOf" | "supersetOf" => {
            let other = arg(0)?;
            let (small, big) = if func == "subsetOf" { (&items, &other) } else { (&other, &items) };
            vec![Item::Bool(small.iter().all(|i| big.iter().any(|o| equal(o, i) == Some(true))))]
        }
        "iif" => {
            single(&items, func)?;
            let cond = args.first().ok_or_else(|| semantic("iif() without condition"))?;
            let c = eval(cond, &items, false, env)?;
            let truth = match single(&c, "iif() criterion")? {
                None => false,
                Some(one) => one.as_bool().ok_or_else(|| semantic("iif() criterion is not a boolean"))?,
            };
            let branch = if truth { args.get(1) } else { args.get(2) };
            match branch {
                Some(e) => eval(e, &items, false, env)?,
                None if truth => return Err(semantic("iif() needs a true result")),
                None => vec![],
            }
        }
        "allTrue" | "anyTrue" | "allFalse" | "anyFalse" => {
            let mut bools = Vec::with_capacity(items.len());
            for i in &items {
                bools.push(i.as_bool().ok_or_else(|| semantic(format!("{func}() on a non-boolean")))?);
            }
            vec![Item::Bool(match func {
                "allTrue" => bools.iter().all(|b| *b),
                "anyTrue" => bools.iter().any(|b| *b),
                "allFalse" => bools.iter().all(|b| !*b),
                _ => bools.iter().any(|b| !*b),
            })]
        }
        "startsWith" | "endsWith" | "contains" => {
            let Some(s) = input_str()? else { return Ok(vec![]) };
            let Some(x) = arg_str(0)? else { return Ok(vec![]) };
            vec![Item::Bool(match func {
                "startsWith" => s.starts_with(x.as_str()),
                "endsWith" => s.ends_with(x.as_str()),
                _ => s.contains(x.as_str()),
            })]
        }
        "matches" | "matchesFull" => {
            let Some(s) = input_str()? else { return Ok(vec![]) };
            let Some(p) = arg_str(0)? else { return Ok(vec![]) };
            vec![Item::Bool(Regex::new(&p)?.is_match(&s, func == "matchesFull")?)]
        }
        "replaceMatches" => {
            let Some(s) = input_str()? else { return Ok(vec![]) };
            let (Some(p), Some(with)) = (arg_str(0)?, arg_str(1)?) else { return Ok(vec![]) };
            if p.is_empty() {
                return Ok(vec![Item::Str(s)]);
            }
            vec![Item::Str(Regex::new(&p)?.replace_all(&s, &with)?)]
        }
        "encode" | "decode" | "escape" | "unescape" => {
            let Some(s) = input_str()? else { return Ok(vec![]) };
            let Some(f) = arg_str(0)? else { return Ok(vec![]) };
            let r = match func {
                "encode" => text::encode(&s, &f),
                "decode" => text::decode(&s, &f),
                "escape" => text::escape(&s, &f),
                _ => text::unescape(&s, &f),
            };
            r.map(Item::Str).into_iter().collect()
        }
        "length" => input_str()?.map(|s| Item::Num(s.chars().count().to_string())).into_iter().collect(),
        "upper" => input_str()?.map(|s| Item::Str(s.to_uppercase())).into_iter().collect(),
        "lower" => input_str()?.map(|s| Item::Str(s.to_lowercase())).into_iter().collect(),
        "trim" => input_str()?.map(|s| Item::Str(s.trim().to_string())).into_iter().collect(),
        "toChars" => input_str()?.map(|s| s.chars().map(|c| Item::Str(c.to_string())).collect()).unwrap_or_default(),
        "substring" => {
            let Some(s) = input_str()? else { return Ok(vec![]) };
            let Some(start) = arg_int(0)? else { return Ok(vec![]) };
            let len = if args.len() > 1 { arg_int(1)? } else { None };
            let n = s.chars().count() as i64;
            // a start past the end is empty; at the end it is the empty string (as the
            // reference validator reads `'#'.substring(1)` in ref-1)
            if start < 0 || start > n {
                return Ok(vec![]);
            }
            let tail = s.chars().skip(start as usize);
            vec![Item::Str(match len {
                Some(l) => tail.take(l.max(0) as usize).collect(),
                None => tail.collect(),
            })]
        }
        "indexOf" => {
            let Some(s) = input_str()? else { return Ok(vec![]) };
            let Some(x) = arg_str(0)? else { return Ok(vec![]) };
            vec![Item::Num(s.find(x.as_str()).map_or(-1, |b| s[..b].chars().count() as i64).to_string())]
        }
        "replace" => {
            let Some(s) = input_str()? else { return Ok(vec![]) };
            let (Some(a), Some(b)) = (arg_str(0)?, arg_str(1)?) else { return Ok(vec![]) };
            vec![Item::Str(if a.is_empty() {
                s.chars().map(|c| format!("{b}{c}")).collect::<String>() + &b
            } else {
                s.replace(a.as_str(), &b)
            })]
        }
        "split" => {
            let Some(s) = input_str()? else { return Ok(vec![]) };
            let Some(sep) = arg_str(0)? else { return Ok(vec![]) };
            s.split(sep.as_str()).map(|p| Item::Str(p.to_string())).collect()
        }
        "join" => {
            let sep = if args.is_empty() { String::new() } else { arg_str(0)?.unwrap_or_default() };
            vec![Item::Str(items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect::<Vec<_>>().join(&sep))]
        }
        "today" => vec![Item::Date(temporal::now()[..10].to_string())],
        "now" => vec![Item::Date(temporal::now())],
        "timeOfDay" => vec![Item::Date(format!("T{}", &temporal::now()[11..23]))],
        "abs" | "ceiling" | "floor" | "round" | "sqrt" | "exp" | "ln" | "truncate" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            match val(one) {
                Val::Qty(_, u, Some(d)) if func == "abs" => {
                    vec![Item::Quantity(d.render().trim_start_matches('-').to_string(), u)]
                }
                Val::Num(n) => {
                    let x: f64 = n.parse().unwrap_or(f64::NAN);
                    let (v, dec_out) = match func {
                        "abs" => return Ok(vec![Item::Num(n.trim_start_matches('-').to_string())]),
                        "ceiling" => (x.ceil(), false),
                        "floor" => (x.floor(), false),
                        "round" => {
                            let p = if args.is_empty() { 0 } else { arg_int(0)?.unwrap_or(0) };
                            if p < 0 {
                                return Err(semantic("round() precision must not be negative"));
                            }
                            let p = u32::try_from(p).unwrap_or(0);
                            return Ok(vec![Item::Num(quantity::round_to(x, p))]);
                        }
                        "sqrt" => (x.sqrt(), true),
                        "exp" => (x.exp(), true),
                        "ln" => (x.ln(), true),
                        _ => (x.trunc(), false),
                    };
                    if v.is_finite() { vec![Item::Num(fmt_num(v, dec_out))] } else { vec![] }
                }
                _ => return Err(semantic(format!("{func}() expects a number"))),
            }
        }
        "log" | "power" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            let Val::Num(n) = val(one) else { return Err(semantic(format!("{func}() expects a number"))) };
            let Some(y) = single(&arg(0)?, func)?.and_then(|i| match val(i) {
                Val::Num(m) => m.parse::<f64>().ok(),
                _ => None,
            }) else {
                return Ok(vec![]);
            };
            let x: f64 = n.parse().unwrap_or(f64::NAN);
            let v = if func == "log" { x.ln() / y.ln() } else { x.powf(y) };
            let int = func == "power" && !n.contains('.') && y.fract() == 0.0 && y >= 0.0;
            if v.is_finite() { vec![Item::Num(fmt_num(v, !int))] } else { vec![] }
        }
        "precision" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            match val(one) {
                Val::Num(n) => vec![Item::Num(Dec::parse(&n).map_or(0, Dec::scale).to_string())],
                Val::Time(t) => vec![Item::Num(t.precision().to_string())],
                _ => return Err(semantic("precision() expects a number, date or time")),
            }
        }
        "lowBoundary" | "highBoundary" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            let high = func == "highBoundary";
            let p = if args.is_empty() { None } else { arg_int(0)? };
            match val(one) {
                Val::Num(n) => {
                    Dec::parse(&n).and_then(|d| d.boundary(p.unwrap_or(8), high)).map(Item::Num).into_iter().collect()
                }
                Val::Qty(_, u, Some(d)) => {
                    d.boundary(p.unwrap_or(8), high).map(|v| Item::Quantity(v, u)).into_iter().collect()
                }
                Val::Time(t) => {
                    let p = match p {
                        Some(p) if p < 0 => return Ok(vec![]),
                        Some(p) => Some(p as usize),
                        None => None,
                    };
                    t.boundary(p, high).map(|t| Item::Date(t.render())).into_iter().collect()
                }
                _ => return Err(semantic(format!("{func}() expects a number, quantity, date or time"))),
            }
        }
        "comparable" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            let other = arg(0)?;
            let Some(two) = single(&other, func)? else { return Ok(vec![]) };
            match (val(one), val(two)) {
                (Val::Qty(x, ux, _), Val::Qty(_, uy, _)) => vec![Item::Bool(quantity::convert(x, &ux, &uy).is_some())],
                _ => return Err(semantic("comparable() expects quantities")),
            }
        }
        "toQuantity" | "convertsToQuantity" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            let q = match val(one) {
                Val::Qty(_, u, Some(d)) => Some((d.render(), u)),
                Val::Qty(v, u, None) => Some((fmt_num(v, true), u)),
                Val::Num(n) => Some((n, "1".to_string())),
                Val::Bool(b) => Some((if b { "1.0" } else { "0.0" }.to_string(), "1".to_string())),
                Val::Str(s) => parse_quantity(&s),
                _ => None,
            };
            conversion(func, q.map(|(v, u)| Item::Quantity(v, u)))
        }
        "toString" | "convertsToString" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            let s = match one {
                Item::Node(v, _) if v.is_object() || v.is_array() || v.is_null() => None,
                Item::TypeInfo(..) => None,
                other => Some(other.to_string()),
            };
            conversion(func, s.map(Item::Str))
        }
        "toInteger" | "convertsToInteger" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            let n = match val(one) {
                Val::Num(n) if !n.contains('.') => Some(n),
                Val::Str(s) => {
                    let t = s.strip_prefix('+').unwrap_or(&s);
                    let digits = t.strip_prefix('-').unwrap_or(t);
                    (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && t.parse::<i64>().is_ok())
                        .then(|| t.to_string())
                }
                Val::Bool(b) => Some(if b { "1" } else { "0" }.to_string()),
                _ => None,
            };
            conversion(func, n.map(Item::Num))
        }
        "toDecimal" | "convertsToDecimal" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            let n = match val(one) {
                Val::Num(n) => Some(if n.contains('.') { n } else { format!("{n}.0") }),
                Val::Str(s) => Dec::parse(&s).map(|d| {
                    let r = d.render();
                    if r.contains('.') { r } else { format!("{r}.0") }
                }),
                Val::Bool(b) => Some(if b { "1.0" } else { "0.0" }.to_string()),
                _ => None,
            };
            conversion(func, n.map(Item::Num))
        }
        "toBoolean" | "convertsToBoolean" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            let b = match val(one) {
                Val::Bool(b) => Some(b),
                Val::Num(n) => {
                    let x = Dec::parse(&n).map(Dec::to_f64);
                    if x == Some(1.0) {
                        Some(true)
                    } else if x == Some(0.0) {
                        Some(false)
                    } else {
                        None
                    }
                }
                Val::Str(s) => match s.to_ascii_lowercase().as_str() {
                    "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
                    "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
                    _ => None,
                },
                _ => None,
            };
            conversion(func, b.map(Item::Bool))
        }
        "convertsToDate" | "convertsToDateTime" | "convertsToTime" | "toDate" | "toDateTime" | "toTime" => {
            let Some(one) = single(&items, func)? else { return Ok(vec![]) };
            let Some(text) = one.as_str().map(|t| t.trim_start_matches('@').to_string()) else {
                return Ok(conversion(func, None));
            };
            let kind = temporal_kind(&text);
            let fits = match func {
                "convertsToDate" | "toDate" => {
                    kind == Some("date") || (kind == Some("dateTime") && !text.contains(':'))
                }
                "convertsToDateTime" | "toDateTime" => matches!(kind, Some("date" | "dateTime")),
                _ => kind == Some("time"),
            };
            let value = fits.then(|| match func {
                "toDate" | "convertsToDate" => text.split('T').next().unwrap_or(&text).to_string(),
                "toTime" | "convertsToTime" => format!("T{}", text.trim_start_matches('T')),
                _ => text,
            });
            conversion(func, value.map(Item::Date))
        }
        other => return Err(Error::Unsupported(format!("{other}()"))),
    })
}

fn distinct(items: Vec<Item<'_>>) -> Vec<Item<'_>> {
    let mut out: Vec<Item<'_>> = Vec::with_capacity(items.len());
    for i in items {
        if !out.iter().any(|o| equal(o, &i) == Some(true)) {
            out.push(i);
        }
    }
    out
}

/// `'1 \'wk\''`, `'4 days'`, `'1.5'`: the value and unit of a quantity in text.
fn parse_quantity(s: &str) -> Option<(String, String)> {
    let s = s.trim();
    let end = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+')).unwrap_or(s.len());
    let (num, rest) = s.split_at(end);
    let d = Dec::parse(num)?;
    let rest = rest.trim();
    let unit = if rest.is_empty() {
        "1".to_string()
    } else if let Some(u) = rest.strip_prefix('\'').and_then(|r| r.strip_suffix('\'')) {
        u.to_string()
    } else if quantity::is_calendar_word(rest) {
        rest.to_string()
    } else {
        return None;
    };
    Some((d.render(), unit))
}

/// The child nodes of an item (every property, arrays flattened), typed where known.
fn children<'a>(item: &Item<'a>) -> Vec<Item<'a>> {
    let obj = match item {
        Item::Node(Value::Object(obj), _) => obj,
        Item::Node(_, ItemType(_, Some(Value::Object(ext)))) => ext,
        _ => return vec![],
    };
    let owner = match item {
        Item::Node(Value::Object(_), _) => item.clone(),
        Item::Node(_, ItemType(_, Some(ext))) => Item::Node(ext, ItemType(TypeRef::Named("Element".into()), None)),
        _ => return vec![],
    };
    let mut out = Vec::new();
    for key in obj.keys() {
        if key == "resourceType" {
            continue;
        }
        let key = match key.strip_prefix('_') {
            Some(k) if obj.contains_key(k) => continue,
            Some(k) => k,
            None => key.as_str(),
        };
        let name = choice_base(&owner, key).unwrap_or_else(|| key.to_string());
        for child in member(&owner, &name).unwrap_or_default() {
            if !out.iter().any(|o| same(o, &child)) {
                out.push(child);
            }
        }
    }
    out
}

/// For `valueQuantity` on an element with `value[x]`, the base name `value`.
fn choice_base(item: &Item<'_>, key: &str) -> Option<String> {
    let Item::Node(_, ItemType(ty, _)) = item else {
        return None;
    };
    let (td, prefix) = match ty {
        TypeRef::Named(n) => (spec().type_def(n)?, String::new()),
        TypeRef::Backbone(t, p) => (*t, p.clone()),
        TypeRef::Unknown => return None,
    };
    td.children(&prefix)
        .filter(|e| e.choice)
        .find(|e| key.starts_with(e.name.as_str()) && key.len() > e.name.len())
        .map(|e| e.name.clone())
}

/// Render an f64 result; `decimal` keeps a fraction (`2.0`).
fn fmt_num(n: f64, decimal: bool) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        if decimal { format!("{}.0", n as i64) } else { format!("{}", n as i64) }
    } else {
        let s = n.to_string();
        if s.contains('e') { format!("{n:.8}") } else { s }
    }
}

/// The FHIRPath grammar of date, dateTime and time text (partial precisions allowed).
fn temporal_kind(s: &str) -> Option<&'static str> {
    if let Some(t) = s.strip_prefix('T') {
        return Temporal::parse(t, true).map(|_| "time");
    }
    if let Some(t) = Temporal::parse(s, false) {
        return Some(if t.kind == Kind::Date { "date" } else { "dateTime" });
    }
    Temporal::parse(s, true).map(|_| "time")
}

/// `resolve()` without a database: a Reference (or canonical string) stands for its
/// target, typed by the resource type named in the reference, which is what
/// `resolve() is Patient` in search parameters needs.
fn resolve<'a>(item: &Item<'a>) -> Option<Item<'a>> {
    let Item::Node(v, _) = item else { return None };
    let reference = match v {
        Value::String(s) => s.as_str(),
        _ => v.get("reference")?.as_str()?,
    };
    let path = reference.split(['?', '#']).next().unwrap_or(reference);
    let segments: Vec<&str> = path.split('/').collect();
    let n = segments.len();
    let ty_idx = if n >= 4 && segments.get(n - 2) == Some(&"_history") { n.checked_sub(4)? } else { n.checked_sub(2)? };
    let ty = segments.get(ty_idx)?;
    spec().resource_type(ty).map(|t| Item::Node(v, ItemType(TypeRef::Named(t.to_string()), None)))
}

/// `toX()` gives the converted value (or nothing); `convertsToX()` whether there is one.
fn conversion<'a>(func: &str, converted: Option<Item<'a>>) -> Vec<Item<'a>> {
    if func.starts_with("convertsTo") { vec![Item::Bool(converted.is_some())] } else { converted.into_iter().collect() }
}

/// The System type a FHIR primitive converts to implicitly.
fn system_of(fhir_primitive: &str) -> Option<&'static str> {
    Some(match fhir_primitive {
        "boolean" => "Boolean",
        "integer" | "positiveInt" | "unsignedInt" => "Integer",
        "decimal" => "Decimal",
        "date" => "Date",
        "dateTime" | "instant" => "DateTime",
        "time" => "Time",
        "string" | "code" | "id" | "markdown" | "uri" | "url" | "canonical" | "oid" | "uuid" | "base64Binary" => {
            "String"
        }
        _ => return None,
    })
}

/// Does the item's type equal or derive from `ty` (`Patient`, `FHIR.string`,
/// `System.Boolean`)? FHIR primitives are not System types, except that an unqualified
/// System name matches the primitives that convert to it (R4 invariants rely on it:
/// `que-7` says `answer is Boolean` of an `answerBoolean`).
fn is_type(item: &Item<'_>, ty: &str) -> bool {
    let (ns, ty) = split_type(ty);
    let Some((ins, mut name)) = item.fhirpath_type() else {
        return false;
    };
    if ins == "System" {
        return ns != Some("FHIR") && name == ty;
    }
    if ns == Some("System") {
        return false;
    }
    if ns.is_none() && system_of(&name) == Some(ty) {
        return true;
    }
    for _ in 0..8 {
        if name == ty {
            return true;
        }
        match spec().type_def(&name).and_then(|t| t.base.clone()) {
            Some(b) => name = b,
            None => return false,
        }
    }
    false
}

/// `member()` over a collection. A name that is no element of any item's type is an
/// error (`name.given1`); one known to some of them (after `descendants()`) is not.
fn members<'a>(items: &[Item<'a>], name: &str, strict: bool) -> Result<Vec<Item<'a>>, Error> {
    let mut out = Vec::new();
    let mut unknown = None;
    let mut known = false;
    for i in items {
        match member(i, name) {
            Ok(found) => {
                known = true;
                out.extend(found);
            }
            Err(Error::Semantic(e)) if e.starts_with(UNKNOWN_ELEMENT) => unknown = Some(e),
            Err(e) => return Err(e),
        }
    }
    match unknown {
        Some(e) if !known && strict => Err(Error::Semantic(e)),
        _ => Ok(out),
    }
}

/// Does `e` have a static type, so that naming an element its type lacks is an error?
/// Paths from the context do; results of `descendants()`, `children()`, `resolve()`,
/// iteration variables and the like are of any type and may simply lack it.
fn typed_path(e: &Expr, at_root: bool) -> bool {
    match e {
        Expr::Ident(_) | Expr::This => at_root,
        Expr::Var(v) => matches!(v.as_str(), "resource" | "rootResource" | "context"),
        Expr::Member(b, _) | Expr::Index(b, _) => typed_path(b, at_root),
        Expr::Call(b, f, _) => {
            matches!(
                f.as_str(),
                "where" | "first" | "last" | "tail" | "skip" | "take" | "single" | "distinct" | "trace"
            ) && typed_path(b, at_root)
        }
        _ => false,
    }
}

/// Prefix of the error for a name that is not an element of a type.
const UNKNOWN_ELEMENT: &str = "unknown element";

/// Navigate to child `name` of an item, with the child's type from the definitions.
/// Naming a choice element by its typed JSON name (`valueQuantity`) is an error, as
/// is a name the item's type does not have.
fn member<'a>(item: &Item<'a>, name: &str) -> Result<Vec<Item<'a>>, Error> {
    let (obj, ty) = match item {
        Item::Node(Value::Object(obj), ItemType(ty, _)) => (obj, ty),
        // the extensions and id of a primitive
        Item::Node(_, ItemType(_, Some(ext))) => {
            return member(&Item::Node(ext, ItemType(TypeRef::Named("Element".into()), None)), name);
        }
        Item::TypeInfo(ns, n) => {
            return Ok(match name {
                "namespace" => vec![Item::Str(ns.clone())],
                "name" => vec![Item::Str(n.clone())],
                _ => vec![],
            });
        }
        _ => return Ok(vec![]),
    };
    let owner: Option<(&'static TypeDef, String)> = match ty {
        TypeRef::Named(n) => {
            let n = if n == "Resource" { obj.get("resourceType").and_then(Value::as_str).unwrap_or(n) } else { n };
            spec().type_def(n).map(|t| (t, String::new()))
        }
        TypeRef::Backbone(t, p) => Some((*t, p.clone())),
        TypeRef::Unknown => None,
    };
    let mut out = Vec::new();
    let mut push = |v: Option<&'a Value>, ext: Option<&'a Value>, t: TypeRef| match (v, ext) {
        (Some(Value::Array(a)), _) => {
            let exts = ext.and_then(Value::as_array);
            for (i, x) in a.iter().enumerate() {
                let e = exts.and_then(|e| e.get(i)).filter(|e| !e.is_null());
                if !x.is_null() || e.is_some() {
                    out.push(Item::Node(x, ItemType(child_type(&t, x), e)));
                }
            }
        }
        (None | Some(Value::Null), Some(Value::Array(exts))) => {
            out.extend(exts.iter().filter(|e| !e.is_null()).map(|e| Item::Node(&NULL, ItemType(t.clone(), Some(e)))));
        }
        (None | Some(Value::Null), Some(e)) => out.push(Item::Node(&NULL, ItemType(t, Some(e)))),
        (None | Some(Value::Null), None) => {}
        (Some(v), e) => out.push(Item::Node(v, ItemType(child_type(&t, v), e))),
    };
    // the `_name` sibling holding a primitive's id and extensions, looked up without
    // allocating (a member step is the inner loop of every search index extraction)
    let ext_of = |key: &str| {
        let mut buf = [0u8; 128];
        let n = key.len() + 1;
        if n > buf.len() {
            return obj.get(&format!("_{key}"));
        }
        buf[0] = b'_';
        buf[1..n].copy_from_slice(key.as_bytes());
        std::str::from_utf8(&buf[..n]).ok().and_then(|k| obj.get(k))
    };
    let Some((td, prefix)) = owner else {
        push(obj.get(name), ext_of(name), TypeRef::Unknown);
        return Ok(out);
    };
    let mut buf = [0u8; 256];
    let joined;
    let path: &str = if prefix.is_empty() {
        name
    } else if prefix.len() + name.len() < buf.len() {
        let n = prefix.len();
        buf[..n].copy_from_slice(prefix.as_bytes());
        buf[n] = b'.';
        buf[n + 1..n + 1 + name.len()].copy_from_slice(name.as_bytes());
        std::str::from_utf8(&buf[..n + 1 + name.len()]).unwrap_or(name)
    } else {
        joined = format!("{prefix}.{name}");
        &joined
    };
    match td.element(path) {
        Some(el) if el.choice => {
            for (k, v) in obj {
                if let Some(suffix) = k.strip_prefix(name)
                    && let Some(t) = el.types.iter().find(|t| fhir_spec::is_type_suffix(suffix, t))
                {
                    push(Some(v), ext_of(k), TypeRef::Named(t.clone()));
                }
            }
            for (k, e) in obj {
                if let Some(suffix) = k.strip_prefix('_').and_then(|k| k.strip_prefix(name))
                    && !obj.contains_key(&k[1..])
                    && let Some(t) = el.types.iter().find(|t| fhir_spec::is_type_suffix(suffix, t))
                {
                    push(None, Some(e), TypeRef::Named(t.clone()));
                }
            }
        }
        Some(el) => {
            let t = if let Some(cref) = &el.content_reference {
                TypeRef::Backbone(td, cref.clone())
            } else if td.has_children(path) && td.kind != TypeKind::Primitive {
                TypeRef::Backbone(td, path.to_string())
            } else {
                el.types.first().map(|t| TypeRef::Named(t.clone())).unwrap_or(TypeRef::Unknown)
            };
            push(obj.get(name), ext_of(name), t);
        }
        None => {
            if let Some(base) = choice_base(item, name) {
                return Err(semantic(format!("'{name}' names a choice element by type: use '{base}'")));
            }
            if obj.contains_key(name) || ext_of(name).is_some() {
                push(obj.get(name), ext_of(name), TypeRef::Unknown);
            } else if !td.is_abstract {
                return Err(semantic(format!("{UNKNOWN_ELEMENT} '{name}' of {}", td.name)));
            }
        }
    }
    Ok(out)
}

/// `Resource`-typed children take the type named by their `resourceType`.
fn child_type(t: &TypeRef, v: &Value) -> TypeRef {
    match t {
        TypeRef::Named(n) if n == "Resource" => match v.get("resourceType").and_then(Value::as_str) {
            Some(rt) => TypeRef::Named(rt.to_string()),
            None => TypeRef::Unknown,
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;
    use serde_json::json;

    fn strings(expr: &str, r: &Value) -> Vec<String> {
        let e = parse(expr).unwrap();
        evaluate(&e, r)
            .unwrap()
            .iter()
            .map(|i| match i {
                Item::Node(v, _) => v.to_string(),
                other => other.to_string(),
            })
            .collect()
    }

    #[test]
    fn search_parameter_shapes() {
        let obs = json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "Patient/1"},
            "valueQuantity": {"value": 72, "unit": "/min"},
            "component": [{"code": {"text": "x"}, "valueString": "s"}]});
        assert_eq!(strings("Observation.code.coding.code", &obs), vec!["\"8867-4\""]);
        assert_eq!(strings("(Observation.value as Quantity)", &obs), vec![r#"{"value":72,"unit":"/min"}"#]);
        assert_eq!(strings("Observation.value as CodeableConcept", &obs), Vec::<String>::new());
        assert_eq!(strings("Observation.subject.where(resolve() is Patient)", &obs).len(), 1);
        assert_eq!(strings("Observation.subject.where(resolve() is Group)", &obs).len(), 0);
        assert_eq!(strings("Observation.component.value.ofType(string)", &obs), vec!["\"s\""]);
        assert_eq!(strings("Patient.name", &obs).len(), 0);
        let p = json!({"resourceType": "Patient", "telecom": [{"system": "phone", "value": "1"}, {"system": "email", "value": "a@b"}],
            "deceasedBoolean": false});
        assert_eq!(strings("Patient.telecom.where(system='email')", &p).len(), 1);
        assert_eq!(strings("Patient.deceased.exists() and Patient.deceased != false", &p), vec!["false"]);
        assert_eq!(strings("Patient.telecom[1].value | Patient.telecom.value", &p), vec!["\"a@b\"", "\"1\""]);
    }
}

#[cfg(test)]
mod invariant_tests {
    use super::*;
    use crate::parse;
    use serde_json::json;

    fn check(expr: &str, node: &Value, owner: &str, path: &str, res: &Value) -> Vec<String> {
        let e = parse(expr).unwrap();
        evaluate_on(&e, node, owner, path, res, res).unwrap().iter().map(|i| format!("{i:?}")).collect()
    }

    #[test]
    fn ref_1() {
        let obs = json!({"resourceType": "Observation", "subject": {"reference": "Patient/1"}});
        let r = &obs["subject"];
        let x = "reference.startsWith('#').not() or (reference.substring(1).trace('url') in %rootResource.contained.id.trace('ids'))";
        assert_eq!(check("reference.startsWith('#')", r, "Reference", "", &obs), vec!["Bool(false)"]);
        assert_eq!(check(x, r, "Reference", "", &obs), vec!["Bool(true)"]);
    }
}
