//! The FHIR R4 (4.0.1) definitions Medkarta works from, embedded in the binary.
//!
//! `tools/gen-spec.py` preprocesses the official structure definitions, required value
//! sets, search parameters and the Patient compartment into `data/r4.json.gz`; this crate
//! decompresses and indexes that file once, on first use, and hands out `'static`
//! references. Nothing here parses definitions per request.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::sync::LazyLock;

use serde::Deserialize;

static DATA: &[u8] = include_bytes!("../data/r4.json.gz");

/// The FHIR version these definitions describe.
pub const FHIR_VERSION: &str = "4.0.1";

/// What kind of type a [`TypeDef`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeKind {
    Primitive,
    Complex,
    Resource,
}

/// One element of a type, e.g. `Patient.contact.name`.
#[derive(Debug)]
pub struct ElementDef {
    /// Path relative to the type, e.g. `contact.name` or `value[x]`.
    pub path: String,
    /// JSON property name without the `[x]` suffix, e.g. `name` or `value`.
    pub name: String,
    pub min: u32,
    /// `None` for `*`.
    pub max: Option<u32>,
    /// Allowed type codes; several for a choice element. Empty for a content reference.
    pub types: Vec<String>,
    pub choice: bool,
    /// Canonical URL of a value set bound with strength `required`.
    pub required_binding: Option<String>,
    /// Target resource types of a Reference element (empty = any).
    pub targets: Vec<String>,
    /// For elements defined by reference to another (`#Questionnaire.item`): that path.
    pub content_reference: Option<String>,
    /// Invariants (severity error) that every instance of the element must satisfy.
    pub constraints: Vec<Constraint>,
}

/// An invariant: a FHIRPath expression that must evaluate to true.
#[derive(Debug, Clone)]
pub struct Constraint {
    /// e.g. `per-1`
    pub key: String,
    pub expression: String,
    /// What it means, in words.
    pub human: String,
}

impl ElementDef {
    /// Whether the element repeats (JSON array).
    pub fn is_array(&self) -> bool {
        self.max != Some(1) && self.max != Some(0)
    }
}

/// Is `suffix` of a choice element's JSON name (`Quantity` of `valueQuantity`) the type
/// `ty` (`Quantity`, or `dateTime` for `DateTime`)? Type names are ASCII.
pub fn is_type_suffix(suffix: &str, ty: &str) -> bool {
    let (s, t) = (suffix.as_bytes(), ty.as_bytes());
    s.len() == t.len() && !s.is_empty() && s[0] == t[0].to_ascii_uppercase() && s[1..] == t[1..]
}

/// A resource or data type.
#[derive(Debug)]
pub struct TypeDef {
    pub name: String,
    pub kind: TypeKind,
    pub base: Option<String>,
    pub is_abstract: bool,
    /// Invariants on the type itself (e.g. `per-1` of Period, `dom-2` of resources).
    pub constraints: Vec<Constraint>,
    /// Resources: the top-level elements of the summary view (`_summary=true`).
    pub summary: Vec<String>,
    elements: HashMap<String, ElementDef>,
    /// Parent path ("" for the type itself) -> the children's paths (keys of `elements`).
    children: HashMap<String, Vec<String>>,
}

impl TypeDef {
    /// The element at a relative path (`contact.name`), choice elements by base name.
    pub fn element(&self, path: &str) -> Option<&ElementDef> {
        self.elements.get(path)
    }

    /// The child elements of a relative path ("" for top level).
    pub fn children(&self, parent: &str) -> impl Iterator<Item = &ElementDef> {
        self.children.get(parent).into_iter().flatten().filter_map(|path| self.elements.get(path))
    }

    /// Is this a backbone element path (one with its own children)?
    pub fn has_children(&self, path: &str) -> bool {
        self.children.contains_key(path)
    }
}

/// Codes of a value set, by code system.
#[derive(Debug)]
pub enum ValueSetCodes {
    /// Every code, grouped by system.
    Enumerated(HashMap<String, BTreeSet<String>>),
    /// Cannot be enumerated from the embedded definitions (grammar-based or external).
    NotEnumerable,
}

impl ValueSetCodes {
    /// `Some(true/false)` when the set can be enumerated; `system` `None` matches any system.
    pub fn contains(&self, system: Option<&str>, code: &str) -> Option<bool> {
        match self {
            ValueSetCodes::NotEnumerable => None,
            ValueSetCodes::Enumerated(map) => Some(match system {
                Some(s) => map.get(s).is_some_and(|c| c.contains(code)),
                None => map.values().any(|c| c.contains(code)),
            }),
        }
    }
}

/// The type of a search parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

impl SearchParamType {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "number" => Self::Number,
            "date" => Self::Date,
            "string" => Self::String,
            "token" => Self::Token,
            "reference" => Self::Reference,
            "composite" => Self::Composite,
            "quantity" => Self::Quantity,
            "uri" => Self::Uri,
            "special" => Self::Special,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Number => "number",
            Self::Date => "date",
            Self::String => "string",
            Self::Token => "token",
            Self::Reference => "reference",
            Self::Composite => "composite",
            Self::Quantity => "quantity",
            Self::Uri => "uri",
            Self::Special => "special",
        }
    }
}

/// A base SearchParameter of the specification.
#[derive(Debug)]
pub struct SearchParamDef {
    pub id: String,
    pub url: String,
    pub code: String,
    pub base: Vec<String>,
    pub kind: SearchParamType,
    pub expression: Option<String>,
    pub target: Vec<String>,
    /// Composite parameters: the component parameters (by canonical URL) and their
    /// FHIRPath expressions, relative to each element the parameter's expression selects.
    pub component: Vec<ComponentDef>,
}

/// One component of a composite search parameter.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ComponentDef {
    pub definition: String,
    pub expression: String,
}

/// All definitions, indexed.
#[derive(Debug)]
pub struct Spec {
    types: HashMap<String, TypeDef>,
    resource_types: Vec<&'static str>,
    value_sets: HashMap<String, ValueSetCodes>,
    search_params: Vec<SearchParamDef>,
    /// (resource type, code) -> index into `search_params`; `Resource`/`DomainResource`
    /// parameters are listed under every resource type.
    search_by_code: HashMap<(String, String), usize>,
    patient_compartment: HashMap<String, Vec<String>>,
}

#[derive(Deserialize)]
struct RawData {
    types: HashMap<String, RawType>,
    #[serde(rename = "valueSets")]
    value_sets: HashMap<String, Option<HashMap<String, Vec<String>>>>,
    #[serde(rename = "searchParams")]
    search_params: Vec<RawParam>,
    compartments: HashMap<String, HashMap<String, Vec<String>>>,
}

#[derive(Deserialize)]
struct RawType {
    k: String,
    b: Option<String>,
    a: bool,
    e: Vec<serde_json::Value>,
    #[serde(default)]
    c: Vec<(String, String, String)>,
    #[serde(default)]
    s: Vec<String>,
}

fn constraint((key, expression, human): (String, String, String)) -> Constraint {
    Constraint { key, expression, human }
}

#[derive(Deserialize)]
struct RawParam {
    id: String,
    url: String,
    code: String,
    base: Vec<String>,
    #[serde(rename = "type")]
    kind: String,
    expression: Option<String>,
    #[serde(default)]
    target: Vec<String>,
    #[serde(default)]
    component: Vec<ComponentDef>,
}

static SPEC: LazyLock<Spec> = LazyLock::new(load);

/// The embedded R4 definitions (loaded on first use, a few milliseconds).
pub fn spec() -> &'static Spec {
    &SPEC
}

#[allow(clippy::expect_used)] // the embedded file is generated and tested; failure is a build defect
fn load() -> Spec {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(DATA).read_to_end(&mut raw).expect("embedded r4.json.gz is valid gzip");
    let data: RawData = serde_json::from_slice(&raw).expect("embedded r4.json.gz is valid");

    let mut types = HashMap::new();
    let mut resource_types = Vec::new();
    for (name, t) in data.types {
        let kind = match t.k.as_str() {
            "p" => TypeKind::Primitive,
            "r" => TypeKind::Resource,
            _ => TypeKind::Complex,
        };
        let mut elements = HashMap::new();
        let mut children: HashMap<String, Vec<String>> = HashMap::new();
        for e in t.e {
            let Some(el) = parse_element(&e) else {
                continue;
            };
            let (parent, _) = el.path.rsplit_once('.').unwrap_or(("", &el.path));
            let key = match el.path.strip_suffix("[x]") {
                Some(p) => p.to_string(),
                None => el.path.clone(),
            };
            children.entry(parent.to_string()).or_default().push(key.clone());
            elements.insert(key, el);
        }
        if kind == TypeKind::Resource && !t.a {
            resource_types.push(&*Box::leak(name.clone().into_boxed_str()));
        }
        types.insert(
            name.clone(),
            TypeDef {
                name,
                kind,
                base: t.b,
                is_abstract: t.a,
                constraints: t.c.into_iter().map(constraint).collect(),
                summary: t.s,
                elements,
                children,
            },
        );
    }
    resource_types.sort_unstable();

    let value_sets = data
        .value_sets
        .into_iter()
        .map(|(url, codes)| {
            let codes = match codes {
                None => ValueSetCodes::NotEnumerable,
                Some(map) => {
                    ValueSetCodes::Enumerated(map.into_iter().map(|(s, c)| (s, c.into_iter().collect())).collect())
                }
            };
            (url, codes)
        })
        .collect();

    let mut search_params = Vec::new();
    let mut search_by_code = HashMap::new();
    for p in data.search_params {
        let Some(kind) = SearchParamType::parse(&p.kind) else {
            continue;
        };
        let idx = search_params.len();
        for base in &p.base {
            if base == "Resource" || base == "DomainResource" {
                for rt in &resource_types {
                    let domain = base == "Resource" || !matches!(*rt, "Bundle" | "Binary" | "Parameters");
                    if domain {
                        search_by_code.entry((rt.to_string(), p.code.clone())).or_insert(idx);
                    }
                }
            } else {
                search_by_code.insert((base.clone(), p.code.clone()), idx);
            }
        }
        search_params.push(SearchParamDef {
            id: p.id,
            url: p.url,
            code: p.code,
            base: p.base,
            kind,
            expression: p.expression,
            target: p.target,
            component: p.component,
        });
    }
    let patient_compartment = data.compartments.get("Patient").cloned().unwrap_or_default();

    Spec { types, resource_types, value_sets, search_params, search_by_code, patient_compartment }
}

fn parse_element(e: &serde_json::Value) -> Option<ElementDef> {
    let a = e.as_array()?;
    let path = a.first()?.as_str()?.to_string();
    let min = a.get(1).and_then(|v| v.as_u64()).unwrap_or(0) as u32;
    let max = match a.get(2).and_then(|v| v.as_str()) {
        Some("*") | None => None,
        Some(n) => n.parse().ok(),
    };
    let strings = |i: usize| -> Vec<String> {
        a.get(i)
            .and_then(|v| v.as_array())
            .map(|v| v.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let types = strings(3);
    let required_binding = a.get(4).and_then(|v| v.as_str()).map(str::to_string);
    let targets = strings(5);
    let content_reference = a.get(6).and_then(|v| v.as_str()).map(str::to_string);
    let constraints = a
        .get(7)
        .and_then(|v| serde_json::from_value::<Vec<(String, String, String)>>(v.clone()).ok())
        .unwrap_or_default()
        .into_iter()
        .map(constraint)
        .collect();
    let last = path.rsplit('.').next().unwrap_or(&path);
    let choice = last.ends_with("[x]");
    let name = last.trim_end_matches("[x]").to_string();
    Some(ElementDef { path, name, min, max, types, choice, required_binding, targets, content_reference, constraints })
}

impl Spec {
    /// A type (resource, complex or primitive) by name.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.types.get(name)
    }

    /// All concrete resource type names, sorted.
    pub fn resource_types(&self) -> &[&'static str] {
        &self.resource_types
    }

    /// The `'static` name of a concrete resource type, if `name` is one.
    pub fn resource_type(&self, name: &str) -> Option<&'static str> {
        self.resource_types.binary_search(&name).ok().and_then(|i| self.resource_types.get(i).copied())
    }

    /// The codes of a value set bound with strength `required`.
    pub fn value_set(&self, url: &str) -> Option<&ValueSetCodes> {
        self.value_sets.get(url.split('|').next().unwrap_or(url))
    }

    /// Every base search parameter.
    pub fn search_params(&self) -> &[SearchParamDef] {
        &self.search_params
    }

    /// The search parameter `code` applicable to `resource_type` (own or inherited).
    pub fn search_param(&self, resource_type: &str, code: &str) -> Option<&SearchParamDef> {
        self.search_by_code.get(&(resource_type.to_string(), code.to_string())).and_then(|i| self.search_params.get(*i))
    }

    /// A search parameter by canonical URL.
    pub fn search_param_by_url(&self, url: &str) -> Option<&SearchParamDef> {
        self.search_params.iter().find(|p| p.url == url)
    }

    /// Search parameters that place a resource of this type in a patient's compartment.
    pub fn patient_compartment_params(&self, resource_type: &str) -> &[String] {
        self.patient_compartment.get(resource_type).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_the_whole_specification() {
        let s = spec();
        assert_eq!(s.resource_types().len(), 146); // the codes of ValueSet resource-types
        assert!(s.resource_type("Patient").is_some());
        assert!(s.resource_type("DomainResource").is_none());
        let patient = s.type_def("Patient").unwrap();
        let name = patient.element("name").unwrap();
        assert!(name.is_array());
        assert_eq!(name.types, vec!["HumanName"]);
        let gender = patient.element("gender").unwrap();
        let vs = s.value_set(gender.required_binding.as_deref().unwrap()).unwrap();
        assert_eq!(vs.contains(Some("http://hl7.org/fhir/administrative-gender"), "female"), Some(true));
        assert_eq!(vs.contains(None, "woman"), Some(false));
        let obs = s.type_def("Observation").unwrap();
        assert!(obs.element("value").unwrap().choice);
        assert_eq!(s.search_params().len(), 1378);
        assert_eq!(s.search_param("Patient", "_id").map(|p| p.kind), Some(SearchParamType::Token));
        assert_eq!(
            s.search_param("Observation", "subject").and_then(|p| p.expression.as_deref()),
            Some("Observation.subject")
        );
        assert!(!s.patient_compartment_params("Observation").is_empty());
    }
}
