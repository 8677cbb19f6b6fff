//! FHIR XML to JSON, for running the official test cases that exist only in XML. Uses the
//! embedded definitions to tell arrays, primitives, choice types and resources apart.

use fhir_spec::{TypeDef, TypeKind, spec};
use quick_xml::Reader;
use quick_xml::events::Event;
use serde_json::{Map, Number, Value};

/// A parsed XML element.
#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Node>,
    pub text: String,
    /// The element's source text (kept for XHTML, whose mixed content matters).
    pub raw: String,
}

impl Node {
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
    pub fn child(&self, name: &str) -> Option<&Node> {
        self.children.iter().find(|c| c.name == name)
    }
    fn to_xml(&self) -> String {
        if !self.raw.is_empty() {
            return self.raw.clone();
        }
        let attrs: String = self.attrs.iter().map(|(k, v)| format!(" {k}=\"{}\"", escape(v))).collect();
        if self.children.is_empty() && self.text.is_empty() {
            return format!("<{}{attrs}/>", self.name);
        }
        let inner: String = self.children.iter().map(Node::to_xml).collect();
        format!("<{}{attrs}>{}{inner}</{}>", self.name, escape(&self.text), self.name)
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Parse an XML document into its root element.
pub fn parse(xml: &str) -> Node {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<(Node, usize)> = vec![(
        Node { name: String::new(), attrs: vec![], children: vec![], text: String::new(), raw: String::new() },
        0,
    )];
    loop {
        let before = reader.buffer_position() as usize;
        match reader.read_event().expect("well-formed XML") {
            Event::Start(e) => stack.push((element(&e), before)),
            Event::Empty(e) => {
                let mut n = element(&e);
                if n.name == "div" {
                    n.raw = xml[before..reader.buffer_position() as usize].to_string();
                }
                stack.last_mut().expect("parent").0.children.push(n);
            }
            Event::End(_) => {
                let (mut n, start) = stack.pop().expect("open element");
                if n.name == "div" {
                    n.raw = xml[start..reader.buffer_position() as usize].to_string();
                }
                stack.last_mut().expect("parent").0.children.push(n);
            }
            Event::Text(t) => {
                let text = t.decode().expect("utf-8").into_owned();
                let text = quick_xml::escape::unescape(&text).map(|c| c.into_owned()).unwrap_or(text);
                if !text.trim().is_empty() {
                    stack.last_mut().expect("parent").0.text.push_str(&text);
                }
            }
            Event::GeneralRef(r) => {
                // entities arrive as their own events: &lt; &gt; &amp; &quot; &apos; &#..;
                let name = String::from_utf8_lossy(r.as_ref()).to_string();
                let ch = match name.as_str() {
                    "lt" => Some('<'),
                    "gt" => Some('>'),
                    "amp" => Some('&'),
                    "quot" => Some('"'),
                    "apos" => Some('\''),
                    n => n
                        .strip_prefix("#x")
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .or_else(|| n.strip_prefix('#').and_then(|d| d.parse().ok()))
                        .and_then(char::from_u32),
                };
                if let Some(c) = ch {
                    stack.last_mut().expect("parent").0.text.push(c);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    stack.pop().and_then(|(r, _)| r.children.into_iter().next()).expect("a root element")
}

fn element(e: &quick_xml::events::BytesStart<'_>) -> Node {
    let name = String::from_utf8_lossy(e.name().as_ref()).to_string();
    let attrs = e
        .attributes()
        .filter_map(Result::ok)
        .map(|a| {
            (
                String::from_utf8_lossy(a.key.as_ref()).to_string(),
                a.unescape_value().map(|v| v.into_owned()).unwrap_or_default(),
            )
        })
        .collect();
    Node { name, attrs, children: vec![], text: String::new(), raw: String::new() }
}

/// Convert a resource element (`<Patient xmlns=...>`) to FHIR JSON.
pub fn resource(node: &Node) -> Value {
    let ty = spec().type_def(&node.name).unwrap_or_else(|| panic!("not a resource: {}", node.name));
    let mut obj = Map::new();
    obj.insert("resourceType".into(), Value::String(node.name.clone()));
    children(node, ty, "", &mut obj);
    Value::Object(obj)
}

fn upper_first(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

fn children(node: &Node, ty: &'static TypeDef, prefix: &str, obj: &mut Map<String, Value>) {
    if let Some(id) = node.attr("id") {
        obj.insert("id".into(), Value::String(id.to_string()));
    }
    if let Some(url) = node.attr("url") {
        obj.insert("url".into(), Value::String(url.to_string()));
    }
    for c in &node.children {
        let full = |n: &str| {
            if prefix.is_empty() { n.to_string() } else { format!("{prefix}.{n}") }
        };
        let (el, type_code) = match ty.element(&full(&c.name)) {
            Some(el) if !el.choice => (el, el.types.first().cloned().unwrap_or_else(|| "BackboneElement".into())),
            _ => {
                let found = ty.children(prefix).filter(|e| e.choice).find_map(|e| {
                    let suffix = c.name.strip_prefix(e.name.as_str())?;
                    e.types.iter().find(|t| upper_first(t) == suffix).map(|t| (e, t.clone()))
                });
                found.unwrap_or_else(|| panic!("unknown element {} in {}", c.name, ty.name))
            }
        };
        let key = el.path.trim_end_matches("[x]");
        let kind = spec().type_def(&type_code).map(|t| t.kind);
        let (value, companion) = if type_code == "xhtml" {
            (Some(Value::String(c.to_xml())), None)
        } else if kind == Some(TypeKind::Primitive) {
            let v = c.attr("value").map(|v| primitive(&type_code, v));
            let mut ext = Map::new();
            children(
                &Node { attrs: c.attrs.iter().filter(|(k, _)| k == "id").cloned().collect(), ..c.clone() },
                spec().type_def("Element").expect("Element"),
                "",
                &mut ext,
            );
            (v, (!ext.is_empty()).then_some(Value::Object(ext)))
        } else if type_code == "Resource" || kind == Some(TypeKind::Resource) {
            (c.children.first().map(resource), None)
        } else {
            let mut inner = Map::new();
            match &el.content_reference {
                Some(target) => children(c, ty, target, &mut inner),
                None if ty.has_children(key) => children(c, ty, key, &mut inner),
                None => children(c, spec().type_def(&type_code).expect("type"), "", &mut inner),
            }
            (Some(Value::Object(inner)), None)
        };
        let name = if el.choice { c.name.clone() } else { el.name.clone() };
        push(obj, &name, value, el.is_array());
        if let Some(ext) = companion {
            push(obj, &format!("_{name}"), Some(ext), el.is_array());
        }
    }
}

fn push(obj: &mut Map<String, Value>, name: &str, value: Option<Value>, array: bool) {
    let value = value.unwrap_or(Value::Null);
    if array {
        let slot = obj.entry(name.to_string()).or_insert_with(|| Value::Array(vec![]));
        if let Value::Array(a) = slot {
            a.push(value);
        }
    } else if !value.is_null() {
        obj.insert(name.to_string(), value);
    }
}

fn primitive(type_code: &str, v: &str) -> Value {
    match type_code {
        "boolean" => Value::Bool(v == "true"),
        "integer" | "positiveInt" | "unsignedInt" | "decimal" => {
            serde_json::from_str::<Number>(v).map(Value::Number).unwrap_or_else(|_| Value::String(v.to_string()))
        }
        _ => Value::String(v.to_string()),
    }
}
