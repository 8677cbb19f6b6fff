//! Evaluation of parsed FHIRPath over `serde_json::Value`, with element types taken from
//! the R4 definitions so that choice elements and type tests work as in the spec.

use fhir_spec::{TypeDef, TypeKind, spec};
use serde_json::Value;

use crate::{Error, Expr};

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
    Node(&'a Value, ItemType),
    Str(String),
    Bool(bool),
    Num(String),
    /// A date/time literal (`@2020-01-01`), without the `@`.
    Date(String),
}

/// The FHIR type of a node (opaque; ask with [`Item::type_name`]).
#[derive(Debug, Clone)]
pub struct ItemType(TypeRef);

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
            Item::Node(_, ItemType(TypeRef::Named(n))) => Some(n),
            Item::Node(_, ItemType(TypeRef::Backbone(..))) => Some("BackboneElement"),
            Item::Node(_, ItemType(TypeRef::Unknown)) => None,
            Item::Str(_) => Some("string"),
            Item::Bool(_) => Some("boolean"),
            Item::Num(n) if n.contains('.') => Some("decimal"),
            Item::Num(_) => Some("integer"),
            Item::Date(d) if d.starts_with('T') => Some("time"),
            Item::Date(d) if d.contains('T') => Some("dateTime"),
            Item::Date(_) => Some("date"),
        }
    }

    /// Whether child element `name` of this node repeats, per the definitions.
    pub fn child_repeats(&self, name: &str) -> Option<bool> {
        let Item::Node(v, ItemType(ty)) = self else {
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

    fn equals(&self, other: &Item<'_>) -> bool {
        if let (Some(a), Some(b)) = (self.as_str(), other.as_str()) {
            return a == b;
        }
        if let (Some(a), Some(b)) = (self.as_bool(), other.as_bool()) {
            return a == b;
        }
        let num = |i: &Item<'_>| match i {
            Item::Num(n) => n.parse::<f64>().ok(),
            Item::Node(Value::Number(n), _) => n.to_string().parse::<f64>().ok(),
            _ => None,
        };
        if let (Some(a), Some(b)) = (num(self), num(other)) {
            return a == b;
        }
        match (self, other) {
            (Item::Node(a, _), Item::Node(b, _)) => a == b,
            _ => false,
        }
    }
}

/// The environment of an evaluation: `%resource`, `%rootResource` and `%context`.
struct Env<'a> {
    resource: Item<'a>,
    root_resource: Item<'a>,
    context: Item<'a>,
}

fn resource_item(resource: &Value) -> Item<'_> {
    let ty = match resource.get("resourceType").and_then(Value::as_str) {
        Some(rt) => TypeRef::Named(rt.to_string()),
        None => TypeRef::Unknown,
    };
    Item::Node(resource, ItemType(ty))
}

/// Evaluate `expr` with `resource` as the context.
pub fn evaluate<'a>(expr: &Expr, resource: &'a Value) -> Result<Vec<Item<'a>>, Error> {
    let root = resource_item(resource);
    let env = Env { resource: root.clone(), root_resource: root.clone(), context: root.clone() };
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
    let context = Item::Node(node, ItemType(ty));
    let env = Env {
        resource: resource_item(resource),
        root_resource: resource_item(root_resource),
        context: context.clone(),
    };
    eval(expr, &[context], true, &env)
}

/// Evaluate `expr` with an item of an earlier evaluation on `resource` as the context
/// (components of composite search parameters).
pub fn evaluate_item<'a>(expr: &Expr, item: &Item<'a>, resource: &'a Value) -> Result<Vec<Item<'a>>, Error> {
    let env = Env { resource: resource_item(resource), root_resource: resource_item(resource), context: item.clone() };
    eval(expr, std::slice::from_ref(item), true, &env)
}

fn eval<'a>(expr: &Expr, input: &[Item<'a>], at_root: bool, env: &Env<'a>) -> Result<Vec<Item<'a>>, Error> {
    Ok(match expr {
        Expr::This => input.to_vec(),
        Expr::Date(d) => vec![Item::Date(d.clone())],
        Expr::Empty => vec![],
        Expr::Var(v) => match v.as_str() {
            "resource" => vec![env.resource.clone()],
            "rootResource" => vec![env.root_resource.clone()],
            "context" => vec![env.context.clone()],
            "ucum" => vec![Item::Str("http://unitsofmeasure.org".into())],
            "sct" => vec![Item::Str("http://snomed.info/sct".into())],
            "loinc" => vec![Item::Str("http://loinc.org".into())],
            other => return Err(Error::Unsupported(format!("%{other}"))),
        },
        Expr::Neg(e) => eval(e, input, at_root, env)?
            .into_iter()
            .map(|i| {
                num_of(&i)
                    .map(|n| Item::Num(fmt_num(-n)))
                    .ok_or_else(|| Error::Unsupported("unary minus on a non-number".into()))
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
                input.iter().flat_map(|i| member(i, name)).collect()
            }
        }
        Expr::Member(base, name) => {
            let items = eval(base, input, at_root, env)?;
            items.iter().flat_map(|i| member(i, name)).collect()
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
            let items = eval(base, input, at_root, env)?;
            if op == "as" {
                items.into_iter().filter(|i| is_type(i, ty)).collect()
            } else {
                match items.as_slice() {
                    [] => vec![],
                    [one] => vec![Item::Bool(is_type(one, ty))],
                    _ => {
                        return Err(Error::Unsupported("'is' on a collection of several items".into()));
                    }
                }
            }
        }
        Expr::Binary(op, a, b) => {
            let l = eval(a, input, at_root, env)?;
            // `implies`, `and`, `or` short-circuit on the left operand
            if op == "implies" && singleton_bool(&l) == Some(false) {
                return Ok(vec![Item::Bool(true)]);
            }
            let r = eval(b, input, at_root, env)?;
            match op.as_str() {
                "|" => {
                    let mut out = l;
                    for item in r {
                        if !out.iter().any(|o| same(o, &item)) {
                            out.push(item);
                        }
                    }
                    out
                }
                "=" | "!=" => match (l.as_slice(), r.as_slice()) {
                    ([], _) | (_, []) => vec![],
                    ([a], [b]) if date_like(a) && date_like(b) => match compare(a, b) {
                        Some(ord) => vec![Item::Bool(ord.is_eq() == (op == "="))],
                        None => vec![],
                    },
                    _ => {
                        let eq = l.len() == r.len() && l.iter().zip(&r).all(|(x, y)| x.equals(y));
                        vec![Item::Bool(if op == "=" { eq } else { !eq })]
                    }
                },
                "and" | "or" => {
                    let lb = singleton_bool(&l);
                    let rb = singleton_bool(&r);
                    let v = if op == "and" {
                        match (lb, rb) {
                            (Some(false), _) | (_, Some(false)) => Some(false),
                            (Some(true), Some(true)) => Some(true),
                            _ => None,
                        }
                    } else {
                        match (lb, rb) {
                            (Some(true), _) | (_, Some(true)) => Some(true),
                            (Some(false), Some(false)) => Some(false),
                            _ => None,
                        }
                    };
                    v.map(Item::Bool).into_iter().collect()
                }
                "xor" => match (singleton_bool(&l), singleton_bool(&r)) {
                    (Some(a), Some(b)) => vec![Item::Bool(a != b)],
                    _ => vec![],
                },
                "implies" => match (singleton_bool(&l), singleton_bool(&r)) {
                    (Some(true), Some(b)) => vec![Item::Bool(b)],
                    (None, Some(true)) => vec![Item::Bool(true)],
                    _ => vec![],
                },
                "in" | "contains" => {
                    let (needle, hay) = if op == "in" { (&l, &r) } else { (&r, &l) };
                    match needle.as_slice() {
                        [] => vec![],
                        [one] => vec![Item::Bool(hay.iter().any(|h| h.equals(one)))],
                        _ => return Err(Error::Unsupported(format!("'{op}' with several items"))),
                    }
                }
                "~" | "!~" => match (l.as_slice(), r.as_slice()) {
                    ([], []) => vec![Item::Bool(op == "~")],
                    ([a], [b]) => {
                        let eq = match (a.as_str(), b.as_str()) {
                            (Some(x), Some(y)) => x.trim().eq_ignore_ascii_case(y.trim()),
                            _ => a.equals(b),
                        };
                        vec![Item::Bool(eq == (op == "~"))]
                    }
                    _ => vec![Item::Bool(op != "~")],
                },
                "<" | ">" | "<=" | ">=" => match (l.as_slice(), r.as_slice()) {
                    ([a], [b]) => match compare(a, b) {
                        Some(ord) => vec![Item::Bool(match op.as_str() {
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
                    let s = |v: &[Item<'_>]| v.first().and_then(|i| i.as_str().map(str::to_string)).unwrap_or_default();
                    vec![Item::Str(s(&l) + &s(&r))]
                }
                "+" | "-" | "*" | "/" | "div" | "mod" => match (l.as_slice(), r.as_slice()) {
                    ([a], [b]) => {
                        if let (Some(x), Some(y), "+") = (a.as_str(), b.as_str(), op.as_str()) {
                            vec![Item::Str(format!("{x}{y}"))]
                        } else {
                            let (Some(x), Some(y)) = (num_of(a), num_of(b)) else {
                                return Err(Error::Unsupported(format!("'{op}' on non-numbers")));
                            };
                            let v = match op.as_str() {
                                "+" => x + y,
                                "-" => x - y,
                                "*" => x * y,
                                "/" => x / y,
                                "div" => (x / y).trunc(),
                                _ => x % y,
                            };
                            if v.is_finite() { vec![Item::Num(fmt_num(v))] } else { vec![] }
                        }
                    }
                    _ => vec![],
                },
                other => return Err(Error::Unsupported(other.to_string())),
            }
        }
        Expr::Call(base, func, args) => {
            let items = eval(base, input, at_root, env)?;
            call(func, items, args, env)?
        }
    })
}

fn singleton_bool(items: &[Item<'_>]) -> Option<bool> {
    match items {
        [] => None,
        [one] => Some(one.as_bool().unwrap_or(true)),
        _ => Some(true),
    }
}

fn same(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (a, b) {
        (Item::Node(x, _), Item::Node(y, _)) => std::ptr::eq(*x, *y),
        _ => a.equals(b),
    }
}

fn call<'a>(func: &str, items: Vec<Item<'a>>, args: &[Expr], env: &Env<'a>) -> Result<Vec<Item<'a>>, Error> {
    // a plain argument is evaluated once, against the expression's context (%context)
    let arg = |i: usize| -> Result<Vec<Item<'a>>, Error> {
        match args.get(i) {
            Some(a) => eval(a, std::slice::from_ref(&env.context), true, env),
            None => Err(Error::Unsupported(format!("{func}() needs an argument"))),
        }
    };
    let arg_str = |i: usize| -> Result<Option<String>, Error> {
        Ok(arg(i)?.first().and_then(|x| x.as_str().map(str::to_string)))
    };
    let arg_num = |i: usize| -> Result<Option<f64>, Error> { Ok(arg(i)?.first().and_then(num_of)) };
    let each_str = |f: &dyn Fn(&str) -> Item<'a>| -> Vec<Item<'a>> {
        match items.as_slice() {
            [one] => one.as_str().map(f).into_iter().collect(),
            _ => vec![],
        }
    };
    let type_arg = || match args.first() {
        Some(Expr::Ident(t)) => Ok(t.clone()),
        _ => Err(Error::Unsupported(format!("{func}() without a type argument"))),
    };
    Ok(match func {
        "where" => {
            let pred = args.first().ok_or_else(|| Error::Unsupported("where() without criteria".into()))?;
            let mut out = Vec::new();
            for item in items {
                let r = eval(pred, std::slice::from_ref(&item), false, env)?;
                if singleton_bool(&r) == Some(true) {
                    out.push(item);
                }
            }
            out
        }
        "exists" => {
            let n = match args.first() {
                Some(_) => call("where", items, args, env)?.len(),
                None => items.len(),
            };
            vec![Item::Bool(n > 0)]
        }
        "empty" => vec![Item::Bool(items.is_empty())],
        "not" => singleton_bool(&items).map(|b| Item::Bool(!b)).into_iter().collect(),
        "first" => items.into_iter().take(1).collect(),
        "last" => items.into_iter().last().into_iter().collect(),
        "ofType" | "as" => {
            let t = type_arg()?;
            items.into_iter().filter(|i| is_type(i, &t)).collect()
        }
        "is" => {
            let t = type_arg()?;
            items.iter().take(1).map(|i| Item::Bool(is_type(i, &t))).collect()
        }
        "resolve" => items.iter().filter_map(resolve).collect(),
        "extension" => {
            let url = match args.first() {
                Some(Expr::Str(u)) => u.clone(),
                _ => return Err(Error::Unsupported("extension() needs a string url".into())),
            };
            items
                .iter()
                .flat_map(|i| member(i, "extension"))
                .filter(|e| e.node().and_then(|n| n.get("url")).and_then(Value::as_str) == Some(url.as_str()))
                .collect()
        }
        "count" => vec![Item::Num(items.len().to_string())],
        "all" => {
            let pred = args.first().ok_or_else(|| Error::Unsupported("all() without criteria".into()))?;
            let mut ok = true;
            for item in &items {
                if singleton_bool(&eval(pred, std::slice::from_ref(item), false, env)?) != Some(true) {
                    ok = false;
                    break;
                }
            }
            vec![Item::Bool(ok)]
        }
        "select" => {
            let proj = args.first().ok_or_else(|| Error::Unsupported("select() without projection".into()))?;
            let mut out = Vec::new();
            for item in &items {
                out.extend(eval(proj, std::slice::from_ref(item), false, env)?);
            }
            out
        }
        "isDistinct" => {
            let distinct = items.iter().enumerate().all(|(i, a)| items.iter().skip(i + 1).all(|b| !a.equals(b)));
            vec![Item::Bool(distinct)]
        }
        "distinct" => {
            let mut out: Vec<Item<'a>> = Vec::new();
            for i in items {
                if !out.iter().any(|o| o.equals(&i)) {
                    out.push(i);
                }
            }
            out
        }
        "hasValue" => vec![Item::Bool(
            matches!(items.as_slice(), [Item::Node(v, _)] if !v.is_object() && !v.is_array())
                || matches!(items.as_slice(), [Item::Str(_) | Item::Num(_) | Item::Bool(_) | Item::Date(_)]),
        )],
        "trace" => items,
        "single" => match items.len() {
            0 | 1 => items,
            _ => return Err(Error::Unsupported("single() on several items".into())),
        },
        "tail" => items.into_iter().skip(1).collect(),
        "skip" => {
            let n = arg_num(0)?.unwrap_or(0.0) as usize;
            items.into_iter().skip(n).collect()
        }
        "take" => {
            let n = arg_num(0)?.unwrap_or(0.0) as usize;
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
        "combine" | "union" => {
            let mut out = items;
            for item in arg(0)? {
                if func == "combine" || !out.iter().any(|o| o.equals(&item)) {
                    out.push(item);
                }
            }
            out
        }
        "intersect" => {
            let other = arg(0)?;
            let mut out: Vec<Item<'a>> = Vec::new();
            for i in items {
                if other.iter().any(|o| o.equals(&i)) && !out.iter().any(|o| o.equals(&i)) {
                    out.push(i);
                }
            }
            out
        }
        "exclude" => {
            let other = arg(0)?;
            items.into_iter().filter(|i| !other.iter().any(|o| o.equals(i))).collect()
        }
        "iif" => {
            let cond = args.first().ok_or_else(|| Error::Unsupported("iif() without condition".into()))?;
            let c = eval(cond, &items, false, env)?;
            if singleton_bool(&c) == Some(true) {
                arg(1)?
            } else if args.len() > 2 {
                arg(2)?
            } else {
                vec![]
            }
        }
        "allTrue" => vec![Item::Bool(items.iter().all(|i| i.as_bool() == Some(true)))],
        "anyTrue" => vec![Item::Bool(items.iter().any(|i| i.as_bool() == Some(true)))],
        "allFalse" => vec![Item::Bool(items.iter().all(|i| i.as_bool() == Some(false)))],
        "anyFalse" => vec![Item::Bool(items.iter().any(|i| i.as_bool() == Some(false)))],
        "startsWith" | "endsWith" | "contains" => {
            let Some(x) = arg_str(0)? else {
                return Ok(vec![]);
            };
            each_str(&|s: &str| {
                Item::Bool(match func {
                    "startsWith" => s.starts_with(x.as_str()),
                    "endsWith" => s.ends_with(x.as_str()),
                    _ => s.contains(x.as_str()),
                })
            })
        }
        "length" => each_str(&|s: &str| Item::Num(s.chars().count().to_string())),
        "upper" => each_str(&|s: &str| Item::Str(s.to_uppercase())),
        "lower" => each_str(&|s: &str| Item::Str(s.to_lowercase())),
        "substring" => {
            let start = arg_num(0)?.unwrap_or(0.0) as usize;
            let len = if args.len() > 1 { arg_num(1)?.map(|n| n as usize) } else { None };
            each_str(&|s: &str| {
                let tail = s.chars().skip(start);
                Item::Str(match len {
                    Some(n) => tail.take(n).collect(),
                    None => tail.collect(),
                })
            })
        }
        "toString" => match items.as_slice() {
            [one] => one
                .as_str()
                .map(|s| Item::Str(s.to_string()))
                .or_else(|| num_of(one).map(|n| Item::Str(fmt_num(n))))
                .into_iter()
                .collect(),
            _ => vec![],
        },
        "toInteger" => match items.as_slice() {
            [one] => num_of(one)
                .or_else(|| one.as_str().and_then(|s| s.parse().ok()))
                .filter(|n| n.fract() == 0.0)
                .map(|n| Item::Num(fmt_num(n)))
                .into_iter()
                .collect(),
            _ => vec![],
        },
        "indexOf" => {
            let Some(x) = arg_str(0)? else { return Ok(vec![]) };
            each_str(&|s: &str| Item::Num(s.find(x.as_str()).map_or(-1, |b| s[..b].chars().count() as i64).to_string()))
        }
        "trim" => each_str(&|s: &str| Item::Str(s.trim().to_string())),
        "toChars" => match items.as_slice() {
            [one] => one.as_str().map(|s| s.chars().map(|c| Item::Str(c.to_string())).collect()).unwrap_or_default(),
            _ => vec![],
        },
        "replace" => {
            let (Some(a), Some(b)) = (arg_str(0)?, arg_str(1)?) else { return Ok(vec![]) };
            each_str(&|s: &str| {
                Item::Str(if a.is_empty() {
                    s.chars().map(|c| format!("{b}{c}")).collect::<String>() + &b
                } else {
                    s.replace(a.as_str(), &b)
                })
            })
        }
        "split" => {
            let Some(sep) = arg_str(0)? else { return Ok(vec![]) };
            match items.as_slice() {
                [one] => one
                    .as_str()
                    .map(|s| s.split(sep.as_str()).map(|p| Item::Str(p.to_string())).collect())
                    .unwrap_or_default(),
                _ => vec![],
            }
        }
        "join" => {
            let sep = if args.is_empty() { String::new() } else { arg_str(0)?.unwrap_or_default() };
            vec![Item::Str(items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect::<Vec<_>>().join(&sep))]
        }
        "abs" | "ceiling" | "floor" | "round" | "sqrt" | "exp" | "ln" | "truncate" => match items.as_slice() {
            [one] => {
                let Some(x) = num_of(one) else { return Ok(vec![]) };
                let v = match func {
                    "abs" => x.abs(),
                    "ceiling" => x.ceil(),
                    "floor" => x.floor(),
                    "round" => {
                        let p = if args.is_empty() { 0.0 } else { arg_num(0)?.unwrap_or(0.0) };
                        let m = 10f64.powf(p);
                        (x * m).round() / m
                    }
                    "sqrt" => x.sqrt(),
                    "exp" => x.exp(),
                    "ln" => x.ln(),
                    _ => x.trunc(),
                };
                if v.is_finite() { vec![Item::Num(fmt_num(v))] } else { vec![] }
            }
            _ => vec![],
        },
        "log" | "power" => match items.as_slice() {
            [one] => {
                let (Some(x), Some(y)) = (num_of(one), arg_num(0)?) else { return Ok(vec![]) };
                let v = if func == "log" { x.ln() / y.ln() } else { x.powf(y) };
                if v.is_finite() { vec![Item::Num(fmt_num(v))] } else { vec![] }
            }
            _ => vec![],
        },
        "toDecimal" | "toBoolean" | "convertsToInteger" | "convertsToDecimal" | "convertsToBoolean"
        | "convertsToString" => {
            let [one] = items.as_slice() else { return Ok(vec![]) };
            let text = one
                .as_str()
                .map(str::to_string)
                .or_else(|| num_of(one).map(fmt_num))
                .or_else(|| one.as_bool().map(|b| b.to_string()));
            let boolean = |t: &str| match t.to_ascii_lowercase().as_str() {
                "true" | "t" | "yes" | "y" | "1" | "1.0" => Some(true),
                "false" | "f" | "no" | "n" | "0" | "0.0" => Some(false),
                _ => None,
            };
            let num = text
                .as_deref()
                .and_then(|t| t.parse::<f64>().ok())
                .or_else(|| one.as_bool().map(|b| if b { 1.0 } else { 0.0 }));
            match func {
                "toDecimal" => num
                    .map(|n| Item::Num(if n.fract() == 0.0 { format!("{}.0", n as i64) } else { n.to_string() }))
                    .into_iter()
                    .collect(),
                "toBoolean" => text.as_deref().and_then(boolean).map(Item::Bool).into_iter().collect(),
                "convertsToInteger" => vec![Item::Bool(
                    num.is_some_and(|n| n.fract() == 0.0)
                        && text.as_deref().is_some_and(|t| !t.contains('.') || one.as_bool().is_some()),
                )],
                "convertsToDecimal" => vec![Item::Bool(num.is_some())],
                "convertsToBoolean" => vec![Item::Bool(text.as_deref().and_then(boolean).is_some())],
                _ => vec![Item::Bool(text.is_some())],
            }
        }
        "convertsToDate" | "convertsToDateTime" | "convertsToTime" | "toDate" | "toDateTime" | "toTime" => {
            let [one] = items.as_slice() else { return Ok(vec![]) };
            let Some(text) = one.as_str().map(|t| t.trim_start_matches('@').to_string()) else {
                return Ok(if func.starts_with("converts") { vec![Item::Bool(false)] } else { vec![] });
            };
            let kind = temporal_kind(&text);
            let fits = match func {
                "convertsToDate" | "toDate" => {
                    kind == Some("date") || (kind == Some("dateTime") && !text.contains(':'))
                }
                "convertsToDateTime" | "toDateTime" => matches!(kind, Some("date" | "dateTime")),
                _ => kind == Some("time"),
            };
            if func.starts_with("converts") {
                vec![Item::Bool(fits)]
            } else if fits {
                let value = match func {
                    "toDate" => text.split('T').next().unwrap_or(&text).to_string(),
                    "toTime" => format!("T{text}"),
                    _ => text,
                };
                vec![Item::Date(value)]
            } else {
                vec![]
            }
        }
        "subsetOf" | "supersetOf" => {
            let other = arg(0)?;
            let (small, big) = if func == "subsetOf" { (&items, &other) } else { (&other, &items) };
            vec![Item::Bool(small.iter().all(|i| big.iter().any(|o| o.equals(i))))]
        }
        other => return Err(Error::Unsupported(format!("{other}()"))),
    })
}

/// The child nodes of an item (every property, arrays flattened), typed where known.
fn children<'a>(item: &Item<'a>) -> Vec<Item<'a>> {
    let Item::Node(Value::Object(obj), _) = item else {
        return vec![];
    };
    let mut out = Vec::new();
    for (key, value) in obj {
        if key == "resourceType" {
            continue;
        }
        if key.starts_with('_') {
            // a primitive's id and extensions: part of the primitive in FHIRPath
            let element = || TypeRef::Named("Element".into());
            match value {
                Value::Array(a) => {
                    out.extend(a.iter().filter(|v| v.is_object()).map(|v| Item::Node(v, ItemType(element()))))
                }
                Value::Object(_) => out.push(Item::Node(value, ItemType(element()))),
                _ => {}
            }
            continue;
        }
        let name = choice_base(item, key).unwrap_or_else(|| key.clone());
        for child in member(item, &name) {
            if !out.iter().any(|o| same(o, &child)) {
                out.push(child);
            }
        }
    }
    out
}

/// For `valueQuantity` on an element with `value[x]`, the base name `value`.
fn choice_base(item: &Item<'_>, key: &str) -> Option<String> {
    let Item::Node(_, ItemType(ty)) = item else {
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

fn num_of(i: &Item<'_>) -> Option<f64> {
    match i {
        Item::Num(n) => n.parse().ok(),
        Item::Node(Value::Number(n), _) => n.to_string().parse().ok(),
        _ => None,
    }
}

fn fmt_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { n.to_string() }
}

/// Is the item a date, dateTime, instant or time?
fn date_like(i: &Item<'_>) -> bool {
    matches!(i, Item::Date(_)) || matches!(i.type_name(), Some("date" | "dateTime" | "instant" | "time"))
}

/// The FHIRPath grammar of date, dateTime and time text (partial precisions allowed).
fn temporal_kind(s: &str) -> Option<&'static str> {
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    let time = |t: &str| {
        let t = t.trim_end_matches('Z');
        let t = match t.rfind(['+', '-']) {
            Some(i) if i > 0 => &t[..i],
            _ => t,
        };
        let (hms, frac) = t.split_once('.').unwrap_or((t, "0"));
        let parts: Vec<&str> = hms.split(':').collect();
        !parts.is_empty()
            && parts.len() <= 3
            && parts.iter().all(|p| digits(p, 2))
            && frac.bytes().all(|b| b.is_ascii_digit())
    };
    let date = |d: &str| {
        let parts: Vec<&str> = d.split('-').collect();
        matches!(parts.as_slice(), [y] | [y, _] | [y, _, _] if digits(y, 4))
            && parts.iter().skip(1).all(|p| digits(p, 2))
    };
    if let Some(t) = s.strip_prefix('T') {
        return time(t).then_some("time");
    }
    match s.split_once('T') {
        Some((d, "")) if date(d) => Some("dateTime"),
        Some((d, t)) if date(d) && time(t) => Some("dateTime"),
        None if date(s) => Some("date"),
        None if time(s) && s.contains(':') || (s.len() == 2 && digits(s, 2)) => Some("time"),
        _ => None,
    }
}

/// Order two singletons: numbers numerically, dates and times at equal precision,
/// strings lexically. `None` when FHIRPath says the result is empty.
fn compare(a: &Item<'_>, b: &Item<'_>) -> Option<std::cmp::Ordering> {
    if let (Some(x), Some(y)) = (num_of(a), num_of(b)) {
        return x.partial_cmp(&y);
    }
    let date_like = |i: &Item<'_>| {
        matches!(i, Item::Date(_)) || matches!(i.type_name(), Some("date" | "dateTime" | "instant" | "time"))
    };
    let (x, y) = (a.as_str()?, b.as_str()?);
    if date_like(a) || date_like(b) {
        let (x, y) = (x.trim_start_matches('@'), y.trim_start_matches('@'));
        if let (Ok(tx), Ok(ty)) = (x.parse::<jiff::Timestamp>(), y.parse::<jiff::Timestamp>()) {
            return Some(tx.cmp(&ty));
        }
        let precision = |s: &str| s.split(['Z', '+']).next().map_or(0, str::len);
        if precision(x) != precision(y) {
            return None;
        }
    }
    Some(x.cmp(y))
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
    spec().resource_type(ty).map(|t| Item::Node(v, ItemType(TypeRef::Named(t.to_string()))))
}

/// Does the item's type equal or derive from `ty`?
fn is_type(item: &Item<'_>, ty: &str) -> bool {
    let ty = ty.strip_prefix("FHIR.").unwrap_or(ty);
    let Some(mut name) = item.type_name().map(str::to_string) else {
        return false;
    };
    if let Item::Node(v, _) = item
        && let Some(rt) = v.get("resourceType").and_then(Value::as_str)
        && name == "Resource"
    {
        name = rt.to_string();
    }
    for _ in 0..8 {
        if name == ty || is_system_alias(ty, &name) {
            return true;
        }
        match spec().type_def(&name).and_then(|t| t.base.clone()) {
            Some(b) => name = b,
            None => return false,
        }
    }
    false
}

/// `System.String` etc. against FHIR primitive names.
fn is_system_alias(ty: &str, name: &str) -> bool {
    matches!(
        (ty, name),
        ("String", "string" | "code" | "id" | "markdown" | "uri" | "url" | "canonical" | "oid" | "uuid")
            | ("Boolean", "boolean")
            | ("Integer", "integer" | "positiveInt" | "unsignedInt")
            | ("Decimal", "decimal")
            | ("Date", "date")
            | ("DateTime", "dateTime" | "instant")
            | ("Time", "time")
            | ("Decimal", "integer")
    )
}

/// Navigate to child `name` of an item, with the child's type from the definitions.
fn member<'a>(item: &Item<'a>, name: &str) -> Vec<Item<'a>> {
    let Item::Node(Value::Object(obj), ItemType(ty)) = item else {
        return vec![];
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
    let mut push = |v: &'a Value, t: TypeRef| match v {
        Value::Array(a) => {
            out.extend(a.iter().filter(|x| !x.is_null()).map(|x| Item::Node(x, ItemType(child_type(&t, x)))))
        }
        Value::Null => {}
        _ => out.push(Item::Node(v, ItemType(child_type(&t, v)))),
    };
    let Some((td, prefix)) = owner else {
        if let Some(v) = obj.get(name) {
            push(v, TypeRef::Unknown);
        }
        return out;
    };
    let path = if prefix.is_empty() { name.to_string() } else { format!("{prefix}.{name}") };
    match td.element(&path) {
        Some(el) if el.choice => {
            for (k, v) in obj {
                if let Some(suffix) = k.strip_prefix(name)
                    && let Some(t) = el.types.iter().find(|t| upper_first(t) == suffix)
                {
                    push(v, TypeRef::Named(t.clone()));
                }
            }
        }
        Some(el) => {
            if let Some(v) = obj.get(name) {
                let t = if let Some(cref) = &el.content_reference {
                    TypeRef::Backbone(td, cref.clone())
                } else if td.has_children(&path) && td.kind != TypeKind::Primitive {
                    TypeRef::Backbone(td, path.clone())
                } else {
                    el.types.first().map(|t| TypeRef::Named(t.clone())).unwrap_or(TypeRef::Unknown)
                };
                push(v, t);
            }
        }
        None => {
            if let Some(v) = obj.get(name) {
                push(v, TypeRef::Unknown);
            }
        }
    }
    out
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

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
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
                Item::Str(s) => s.clone(),
                Item::Bool(b) => b.to_string(),
                Item::Num(n) | Item::Date(n) => n.clone(),
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
