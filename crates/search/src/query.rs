//! Parsing of search requests (`name[:modifier]=value[,value]&...`) into a typed
//! [`Query`]. Parameters and modifiers that are not implemented yet are rejected with a
//! precise error rather than ignored, so conditional operations never act on a guess.

use fhir_model::{Issue, IssueType, ResourceType};
use fhir_spec::SearchParamType;

use crate::index::{CompiledParam, indexed_param};
use crate::normalize::{date_range, fold};
use crate::page::PageRequest;

/// A parsed search: every clause must hold (AND); within a clause any value (OR).
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The type whose parameters the query uses (the first of `types`).
    pub resource_type: ResourceType,
    /// Every type searched: one for a type-level search, several for a system-level
    /// search (`_type`, or every type that has the parameters used).
    pub types: Vec<ResourceType>,
    pub clauses: Vec<Clause>,
    /// `_count`: page size requested.
    pub count: Option<usize>,
    /// `_offset`: rows to skip (accepted from clients; our links use `page`).
    pub offset: usize,
    /// `_page`: the rows after (or before) a position of a previous page.
    pub page: Option<PageRequest>,
    /// Parameters we do not know, reported back to the client.
    pub ignored: Vec<String>,
    /// `_sort`: keys in order.
    pub sort: Vec<SortKey>,
    /// `_summary`.
    pub summary: Summary,
    /// `_elements`: top-level elements to return.
    pub elements: Option<Vec<String>>,
    /// `_total`.
    pub total: Total,
    /// `_include` and `_revinclude`.
    pub includes: Vec<Include>,
    /// Compartment search (`Patient/123/Observation`): only resources that one of these
    /// reference parameters links to the compartment's owner.
    pub compartment: Option<Compartment>,
    /// Access restriction: only resources of patients in an organisation's care.
    pub care: Option<Care>,
}

/// Which relationships put a patient in the care of an organisation or practitioner: the
/// deployment's default policy, before consents (all of them unless configured; none:
/// only patients' consents open records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CareRelations {
    /// Registered: the organisation manages the patient's record, or the practitioner
    /// or organisation is their general practitioner.
    pub registration: bool,
    /// An encounter or episode of care the organisation provides (or provided).
    pub encounter: bool,
    /// An appointment with the practitioner (not cancelled, missed or entered in error).
    pub appointment: bool,
    /// A referral (ServiceRequest) to the organisation or the practitioner as performer
    /// (not revoked, a draft or entered in error).
    pub referral: bool,
}

impl Default for CareRelations {
    fn default() -> Self {
        CareRelations { registration: true, encounter: true, appointment: true, referral: true }
    }
}

impl CareRelations {
    pub const NAMES: [&'static str; 4] = ["registration", "encounter", "appointment", "referral"];

    /// From a list of names (see [`CareRelations::NAMES`]); `none` or empty: no relation.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut r = CareRelations { registration: false, encounter: false, appointment: false, referral: false };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty() && *n != "none") {
            match name {
                "registration" => r.registration = true,
                "encounter" => r.encounter = true,
                "appointment" => r.appointment = true,
                "referral" => r.referral = true,
                other => {
                    return Err(format!(
                        "unknown care relation '{other}' (known: {}, or none)",
                        Self::NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(r)
    }
}

/// Patients in the care of an organisation (or of a practitioner), by the relations the
/// deployment counts ([`CareRelations`]), plus those who opened their record by consent,
/// less those who closed it.
#[derive(Debug, Clone, PartialEq)]
pub struct Care {
    /// The relations that count.
    pub relations: CareRelations,
    /// Organization id.
    pub organization: String,
    /// Practitioner id.
    pub practitioner: Option<String>,
    /// The reference parameters linking the searched type to a patient (empty when
    /// searching Patient itself).
    pub params: Vec<&'static str>,
    /// Patients outside the organisation's care who opened their record (consent,
    /// break-the-glass).
    pub granted: Vec<String>,
    /// Patients who closed their record to the caller (a refusal wins).
    pub denied: Vec<String>,
    /// Security labels of sensitive sections: resources carrying one are left out...
    pub sensitive: Vec<String>,
    /// ...unless the patient opened that section: (label, patient ids).
    pub unlocked: Vec<(String, Vec<String>)>,
}

/// The compartment a search is restricted to.
#[derive(Debug, Clone, PartialEq)]
pub struct Compartment {
    pub owner: ResourceType,
    pub id: String,
    pub params: Vec<&'static str>,
}

impl Query {
    /// Restrict the search to the compartment of `owner/id` (the Patient compartment of
    /// the specification's CompartmentDefinition).
    pub fn in_compartment(&mut self, owner: ResourceType, id: &str) -> Result<(), Issue> {
        if owner.as_str() != "Patient" {
            return Err(unsupported(owner.as_str(), format!("Only the Patient compartment is supported, not {owner}")));
        }
        if !fhir_model::is_valid_id(id) {
            return Err(bad(owner.as_str(), format!("'{id}' is not a valid id")));
        }
        let params: Vec<&'static str> = fhir_spec::spec()
            .patient_compartment_params(self.resource_type.as_str())
            .iter()
            .filter_map(|p| indexed_param(self.resource_type.as_str(), p))
            .filter(|p| p.kind == SearchParamType::Reference)
            .map(|p| p.code)
            .collect();
        if params.is_empty() {
            return Err(bad(
                self.resource_type.as_str(),
                format!("{} resources are not part of a Patient's compartment", self.resource_type),
            ));
        }
        self.compartment = Some(Compartment { owner, id: id.to_string(), params });
        Ok(())
    }
}

/// An `_include` (forward: follow `source.param` from matches) or `_revinclude`
/// (reverse: resources of `source` whose `param` points at a match).
#[derive(Debug, Clone, PartialEq)]
pub struct Include {
    pub source: ResourceType,
    /// `None` for `*`: every reference parameter of `source`.
    pub param: Option<&'static str>,
    pub target: Option<ResourceType>,
    pub reverse: bool,
    /// `:iterate`: apply to included resources too.
    pub iterate: bool,
}

/// One `_sort` key.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub param: &'static str,
    pub kind: SearchParamType,
    pub descending: bool,
}

/// `_summary`: how much of each resource to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Summary {
    #[default]
    False,
    True,
    Text,
    Data,
    Count,
}

/// `_total`: whether to count the matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Total {
    None,
    Estimate,
    #[default]
    Accurate,
}

/// One parameter occurrence: `param` matches if any predicate does.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    pub param: &'static str,
    pub kind: SearchParamType,
    pub any_of: Vec<Predicate>,
    /// Chaining and `_has`: the steps from the searched resource to the one `param` is
    /// tested on (empty for a plain parameter).
    pub path: Vec<Hop>,
}

/// One step of a chained (`subject:Patient.name`) or reverse-chained (`_has:`) search.
#[derive(Debug, Clone, PartialEq)]
pub enum Hop {
    /// Follow reference parameter `param` to resources of type `target`.
    Forward { param: &'static str, target: ResourceType },
    /// Resources of type `source` whose reference parameter `param` points here.
    Reverse { source: ResourceType, param: &'static str },
}

/// Comparison prefixes of number, date and quantity parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prefix {
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    Sa,
    Eb,
    Ap,
}

/// One value to match, already normalised like the index.
#[derive(Debug, Clone, PartialEq)]
pub enum Predicate {
    /// `system`: `None` any system, `Some(None)` no system (`|code`). `code`: `None` = `system|`.
    Token {
        system: Option<Option<String>>,
        code: Option<String>,
        not: bool,
    },
    /// Folded text; `exact` compares the raw text, `contains` anywhere, default starts-with.
    String {
        value: String,
        exact: bool,
        contains: bool,
    },
    Reference {
        resource_type: Option<String>,
        id: Option<String>,
        url: Option<String>,
    },
    Date {
        prefix: Prefix,
        low: i64,
        high: i64,
    },
    /// `value` as given; `[low, high)` the range its precision implies (`100` is 99.5–100.5).
    Number {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
    },
    /// A number with optional `system|code` (code also matches the unit).
    Quantity {
        prefix: Prefix,
        value: f64,
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
    },
    /// `above`: the indexed URI is a prefix of `value`; `below`: `value` is a prefix of it.
    Uri {
        value: String,
        above: bool,
        below: bool,
    },
    Missing(bool),
    /// Full-text terms (`_text`, `_content`, token `:text`): every term must occur.
    Terms(Vec<String>),
    /// A composite value (`code$value`): one predicate per component, all holding for the
    /// same element.
    Composite(Vec<ComponentPredicate>),
}

/// The predicate on one component of a composite parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentPredicate {
    /// Index code of the component (`code-value-quantity#2`).
    pub param: &'static str,
    pub kind: SearchParamType,
    pub predicate: Predicate,
}

fn bad(param: &str, msg: impl Into<String>) -> Issue {
    Issue::error(IssueType::Invalid, msg.into()).at(param.to_string())
}

fn unsupported(param: &str, msg: impl Into<String>) -> Issue {
    Issue::error(IssueType::NotSupported, msg.into()).at(param.to_string())
}

/// Parse a URL query string for a search on `resource_type`.
pub fn parse_query(resource_type: ResourceType, query: &str) -> Result<Query, Issue> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    parse_pairs(resource_type, &pairs)
}

/// Parse a system-level search (`GET [base]?_type=Patient,Practitioner&name=...`): the
/// parameters must mean the same for every type in `_type`; without `_type`, every type
/// for which they do is searched (common parameters such as `_id`, `_lastUpdated`,
/// `_tag` or `_content` apply to all).
pub fn parse_system_query(query: &str) -> Result<Query, Issue> {
    let mut types = Vec::new();
    let mut rest = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()).into_owned() {
        if k == "_type" {
            for t in v.split(',').filter(|t| !t.is_empty()) {
                let rt = ResourceType::parse(t).ok_or_else(|| bad("_type", format!("'{t}' is not a resource type")))?;
                // each type once (a list repeating one is not a bigger search)
                if !types.contains(&rt) {
                    types.push(rt);
                }
            }
        } else {
            rest.push((k, v));
        }
    }
    let explicit = !types.is_empty();
    if !explicit {
        types = fhir_spec::spec().resource_types().iter().filter_map(|t| ResourceType::parse(t)).collect();
    }
    let mut first: Option<Query> = None;
    let mut searched = Vec::new();
    for t in types {
        let q = match parse_pairs(t, &rest) {
            Ok(q) => q,
            Err(e) if explicit => return Err(e),
            Err(_) => continue,
        };
        match &first {
            None => {
                searched.push(t);
                first = Some(q);
            }
            Some(f) if f.clauses == q.clauses && f.sort == q.sort && f.ignored == q.ignored => searched.push(t),
            Some(f) => {
                if explicit {
                    let differing =
                        f.clauses.iter().find(|c| !q.clauses.contains(c)).map(|c| c.param).unwrap_or("_sort");
                    return Err(bad(
                        differing,
                        format!("'{differing}' does not mean the same for every type in _type ({t} differs)"),
                    ));
                }
            }
        }
    }
    let mut q = first.ok_or_else(|| bad("_type", "No resource type has all of these search parameters"))?;
    q.types = searched;
    Ok(q)
}

/// The most parameters a search may have (each `name=value` pair counts).
pub const MAX_PARAMETERS: usize = 100;
/// The most values one parameter may list (`code=a,b,c`: three).
pub const MAX_VALUES: usize = 100;
/// The most hops a chained or reverse-chained (`_has`) parameter may take.
pub const MAX_HOPS: usize = 8;

/// Refuse searches larger than the bounds, with a 400 that says which one.
fn bounded(pairs: &[(String, String)]) -> Result<(), Issue> {
    if pairs.len() > MAX_PARAMETERS {
        let msg = format!(
            "This search has {} parameters; at most {MAX_PARAMETERS} are accepted (split it, or POST a transaction of searches)",
            pairs.len()
        );
        return Err(Issue::error(IssueType::TooLong, msg));
    }
    for (name, raw) in pairs {
        // names in messages as far as they are readable
        let shown: String = name.chars().take(64).collect();
        let hops = name.matches("_has:").count() + name.matches('.').count();
        if hops > MAX_HOPS {
            let msg = format!("'{shown}' chains {hops} hops; at most {MAX_HOPS} are accepted");
            return Err(Issue::error(IssueType::TooLong, msg).at(shown));
        }
        let values = raw.split(',').count();
        if values > MAX_VALUES {
            let msg = format!("'{shown}' lists {values} values; at most {MAX_VALUES} are accepted per parameter");
            return Err(Issue::error(IssueType::TooLong, msg).at(shown));
        }
    }
    Ok(())
}

/// Parse already-decoded `(name, value)` pairs.
fn parse_pairs(resource_type: ResourceType, pairs: &[(String, String)]) -> Result<Query, Issue> {
    bounded(pairs)?;
    let mut q = Query {
        resource_type,
        types: vec![resource_type],
        clauses: Vec::new(),
        count: None,
        offset: 0,
        page: None,
        ignored: Vec::new(),
        sort: Vec::new(),
        summary: Summary::False,
        elements: None,
        total: Total::Accurate,
        includes: Vec::new(),
        compartment: None,
        care: None,
    };
    let mut page_token = None;
    for (name, raw) in pairs {
        if name.starts_with("_has:") || name.contains('.') {
            let (path, param, modifier) = resolve_chain(resource_type, name).map_err(|m| bad(name, m))?;
            let mut clause = clause_for(param, modifier.as_deref(), raw).map_err(|mut e| {
                e.expression = vec![name.clone()];
                e
            })?;
            clause.path = path;
            q.clauses.push(clause);
            continue;
        }
        let (code, modifier) = match name.split_once(':') {
            Some((c, m)) => (c, Some(m)),
            None => (name.as_str(), None),
        };
        match code {
            "_count" => {
                q.count = Some(
                    raw.parse()
                        .map_err(|_| bad("_count", format!("_count must be a non-negative integer, not '{raw}'")))?,
                );
                continue;
            }
            "_offset" => {
                q.offset = raw
                    .parse()
                    .map_err(|_| bad("_offset", format!("_offset must be a non-negative integer, not '{raw}'")))?;
                continue;
            }
            "_page" => {
                page_token = Some(raw.clone());
                continue;
            }
            "_format" | "_pretty" => continue,
            "_sort" => {
                for key in raw.split(',').filter(|k| !k.is_empty()) {
                    let (name, descending) = match key.strip_prefix('-') {
                        Some(n) => (n, true),
                        None => (key, false),
                    };
                    let p = indexed_param(resource_type.as_str(), name).ok_or_else(|| {
                        bad("_sort", format!("Cannot sort {resource_type} by '{name}': not a search parameter of it"))
                    })?;
                    q.sort.push(SortKey { param: p.code, kind: p.kind, descending });
                }
                continue;
            }
            "_summary" => {
                q.summary = match raw.as_str() {
                    "true" => Summary::True,
                    "text" => Summary::Text,
                    "data" => Summary::Data,
                    "count" => Summary::Count,
                    "false" => Summary::False,
                    other => {
                        return Err(bad(
                            "_summary",
                            format!("_summary takes true, text, data, count or false, not '{other}'"),
                        ));
                    }
                };
                continue;
            }
            "_elements" => {
                q.elements = Some(raw.split(',').map(|e| e.trim().to_string()).filter(|e| !e.is_empty()).collect());
                continue;
            }
            "_total" => {
                q.total = match raw.as_str() {
                    "none" => Total::None,
                    "estimate" => Total::Estimate,
                    "accurate" => Total::Accurate,
                    other => {
                        return Err(bad("_total", format!("_total takes none, estimate or accurate, not '{other}'")));
                    }
                };
                continue;
            }
            "_include" | "_revinclude" => {
                let iterate = match modifier {
                    None => false,
                    Some("iterate" | "recurse") => true,
                    Some(m) => return Err(bad(name, format!("'{code}' takes :iterate, not ':{m}'"))),
                };
                q.includes
                    .push(parse_include(resource_type, raw, code == "_revinclude", iterate).map_err(|m| bad(name, m))?);
                continue;
            }
            "_text" | "_content" => {
                if let Some(m) = modifier {
                    return Err(unsupported(name, format!("'{code}' takes no modifier (':{m}')")));
                }
                let param = if code == "_text" { "_text" } else { "_content" };
                let any_of = split_or(raw).iter().map(|v| terms(code, v)).collect::<Result<Vec<_>, _>>()?;
                if any_of.is_empty() {
                    return Err(bad(code, format!("The search parameter '{code}' has no value")));
                }
                q.clauses.push(Clause { param, kind: SearchParamType::Token, any_of, path: Vec::new() });
                continue;
            }
            "_type" => {
                return Err(bad("_type", "_type belongs to a system-level search ([base]?_type=...)"));
            }
            "_contained" | "_containedType" | "_has" | "_list" | "_query" | "_filter" => {
                return Err(unsupported(code, format!("The search parameter '{code}' is not supported yet")));
            }
            _ => {}
        }
        let Some(param) = indexed_param(resource_type.as_str(), code) else {
            if fhir_spec::spec().search_param(resource_type.as_str(), code).is_some() {
                return Err(unsupported(
                    code,
                    format!("The search parameter '{code}' of {resource_type} is not supported yet"),
                ));
            }
            q.ignored.push(name.clone());
            continue;
        };
        q.clauses.push(clause_for(param, modifier, raw)?);
    }
    if let Some(token) = page_token {
        q.page = Some(crate::page::decode(&token, &q.sort).map_err(|m| bad("_page", m))?);
    }
    Ok(q)
}

/// The clause of one occurrence of parameter `p` (with its modifier) and its values.
/// `:text`, `:of-type` and `:identifier` search derived index entries of the parameter.
fn clause_for(p: &'static CompiledParam, modifier: Option<&str>, raw: &str) -> Result<Clause, Issue> {
    let (param, kind) = match (p.kind, modifier) {
        (SearchParamType::Token, Some("text")) => (p.text, SearchParamType::Token),
        (SearchParamType::Token, Some("of-type")) => (p.of_type, SearchParamType::Token),
        (SearchParamType::Reference, Some("identifier")) => (p.identifier, SearchParamType::Token),
        _ => (p.code, p.kind),
    };
    let mut any_of = Vec::new();
    for value in split_or(raw) {
        let predicate = match (p.kind, modifier) {
            (SearchParamType::Token, Some("text")) => terms(p.code, &value)?,
            (SearchParamType::Token, Some("of-type")) => of_type(p.code, &value)?,
            (SearchParamType::Reference, Some("identifier")) => {
                predicate(p.code, SearchParamType::Token, None, &value)?
            }
            (SearchParamType::Composite, None) => composite(p, &value)?,
            _ => predicate(p.code, p.kind, modifier, &value)?,
        };
        any_of.push(predicate);
    }
    if any_of.is_empty() {
        return Err(bad(p.code, format!("The search parameter '{}' has no value", p.code)));
    }
    Ok(Clause { param, kind, any_of, path: Vec::new() })
}

/// Words to find (`_content=сухой кашель`: both words, in any form).
fn terms(code: &str, value: &str) -> Result<Predicate, Issue> {
    let terms = crate::text::terms(value);
    if terms.is_empty() {
        return Err(bad(code, format!("'{value}' contains no word to search for")));
    }
    Ok(Predicate::Terms(terms))
}

/// `:of-type`: `type-system|type-code|value`.
fn of_type(code: &str, value: &str) -> Result<Predicate, Issue> {
    let parts: Vec<&str> = value.splitn(3, '|').collect();
    match parts.as_slice() {
        [system, type_code, v] if !type_code.is_empty() && !v.is_empty() => Ok(Predicate::Token {
            system: Some((!system.is_empty()).then(|| unescape(system))),
            code: Some(format!("{}|{}", unescape(type_code), unescape(v))),
            not: false,
        }),
        _ => Err(bad(code, format!("':of-type' takes system|code|value, not '{value}'"))),
    }
}

/// A composite value: one value per component, separated by `$`.
fn composite(p: &CompiledParam, value: &str) -> Result<Predicate, Issue> {
    let parts: Vec<&str> = value.split('$').collect();
    if parts.len() != p.components.len() {
        return Err(bad(
            p.code,
            format!("'{}' takes {} values separated by '$', not '{value}'", p.code, p.components.len()),
        ));
    }
    let mut out = Vec::new();
    for (c, part) in p.components.iter().zip(parts) {
        let predicate = predicate(p.code, c.kind, None, part)?;
        out.push(ComponentPredicate { param: c.code, kind: c.kind, predicate });
    }
    Ok(Predicate::Composite(out))
}

/// Split on commas not escaped with a backslash, unescaping `\,` `\|` `\$` `\\`.
fn split_or(raw: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next()
                    && let Some(last) = out.last_mut()
                {
                    if n != ',' {
                        last.push('\\');
                    }
                    last.push(n);
                }
            }
            ',' => out.push(String::new()),
            _ => {
                if let Some(last) = out.last_mut() {
                    last.push(c);
                }
            }
        }
    }
    out.retain(|s| !s.is_empty());
    out
}

/// Split `system|code` on the first unescaped `|`.
fn split_bar(v: &str) -> Option<(String, String)> {
    let mut prev = '\0';
    for (i, c) in v.char_indices() {
        if c == '|' && prev != '\\' {
            return Some((unescape(&v[..i]), unescape(&v[i + 1..])));
        }
        prev = c;
    }
    None
}

fn unescape(s: &str) -> String {
    s.replace("\\|", "|").replace("\\$", "$").replace("\\\\", "\\")
}

fn predicate(code: &str, kind: SearchParamType, modifier: Option<&str>, value: &str) -> Result<Predicate, Issue> {
    if modifier == Some("missing") {
        return match value {
            "true" => Ok(Predicate::Missing(true)),
            "false" => Ok(Predicate::Missing(false)),
            _ => Err(bad(code, format!("':missing' takes true or false, not '{value}'"))),
        };
    }
    let modifier_unsupported = |m: &str| {
        Err(unsupported(code, format!("The modifier ':{m}' on '{code}' ({}) is not supported yet", kind.as_str())))
    };
    match kind {
        SearchParamType::Token => {
            let not = match modifier {
                None => false,
                Some("not") => true,
                Some(m) => return modifier_unsupported(m),
            };
            let (system, code_v) = match split_bar(value) {
                None => (None, Some(unescape(value))),
                Some((s, c)) => (Some((!s.is_empty()).then_some(s)), (!c.is_empty()).then_some(c)),
            };
            if system == Some(None) && code_v.is_none() {
                return Err(bad(code, "A token needs a system, a code or both ('|' alone matches nothing)"));
            }
            Ok(Predicate::Token { system, code: code_v, not })
        }
        SearchParamType::String => {
            let (exact, contains) = match modifier {
                None => (false, false),
                Some("exact") => (true, false),
                Some("contains") => (false, true),
                Some(m) => return modifier_unsupported(m),
            };
            let value = unescape(value);
            Ok(Predicate::String { value: if exact { value } else { fold(&value) }, exact, contains })
        }
        SearchParamType::Reference => {
            let type_modifier = match modifier {
                None => None,
                Some(m) if ResourceType::parse(m).is_some() => Some(m.to_string()),
                Some(m) => return modifier_unsupported(m),
            };
            let value = unescape(value);
            if value.contains("://") {
                return Ok(Predicate::Reference { resource_type: None, id: None, url: Some(value) });
            }
            match value.split_once('/') {
                Some((t, id)) => {
                    if ResourceType::parse(t).is_none() || !fhir_model::is_valid_id(id) {
                        return Err(bad(code, format!("'{value}' is not a reference of the form Type/id")));
                    }
                    if type_modifier.as_deref().is_some_and(|m| m != t) {
                        return Err(bad(
                            code,
                            format!("The type modifier ':{}' contradicts '{value}'", type_modifier.unwrap_or_default()),
                        ));
                    }
                    Ok(Predicate::Reference { resource_type: Some(t.to_string()), id: Some(id.to_string()), url: None })
                }
                None => {
                    if !fhir_model::is_valid_id(&value) {
                        return Err(bad(code, format!("'{value}' is not a valid resource id")));
                    }
                    Ok(Predicate::Reference { resource_type: type_modifier, id: Some(value), url: None })
                }
            }
        }
        SearchParamType::Date => {
            if let Some(m) = modifier {
                return modifier_unsupported(m);
            }
            let (prefix, rest) = split_prefix(value);
            let (low, high) = date_range(rest).ok_or_else(|| {
                bad(code, format!("'{value}' is not a valid date (expected [prefix]YYYY[-MM[-DD[Thh:mm[:ss][zone]]]])"))
            })?;
            Ok(Predicate::Date { prefix, low, high })
        }
        SearchParamType::Uri => match modifier {
            None => Ok(Predicate::Uri { value: value.to_string(), above: false, below: false }),
            Some("above") => Ok(Predicate::Uri { value: value.to_string(), above: true, below: false }),
            Some("below") => Ok(Predicate::Uri { value: value.to_string(), above: false, below: true }),
            Some(m) => modifier_unsupported(m),
        },
        SearchParamType::Number | SearchParamType::Quantity => {
            if let Some(m) = modifier {
                return modifier_unsupported(m);
            }
            let (prefix, rest) = split_prefix(value);
            let mut parts = rest.splitn(3, '|');
            let number = parts.next().unwrap_or_default();
            let (value_f, low, high) =
                number_range(number).ok_or_else(|| bad(code, format!("'{value}' does not start with a number")))?;
            if kind == SearchParamType::Number {
                if parts.next().is_some() {
                    return Err(bad(code, format!("'{value}': a number parameter takes no system or code")));
                }
                return Ok(Predicate::Number { prefix, value: value_f, low, high });
            }
            let text = |p: Option<&str>| p.filter(|s| !s.is_empty()).map(unescape);
            let (system, unit) = (text(parts.next()), text(parts.next()));
            Ok(Predicate::Quantity { prefix, value: value_f, low, high, system, code: unit })
        }
        SearchParamType::Composite => match modifier {
            Some(m) => modifier_unsupported(m),
            None => Err(bad(code, format!("'{code}' is a composite parameter: give its values separated by '$'"))),
        },
        SearchParamType::Special => {
            Err(unsupported(code, format!("Searching by special parameters ('{code}') is not supported yet")))
        }
    }
}

/// Hops, the parameter finally tested, and its modifier.
type Resolved = (Vec<Hop>, &'static crate::index::CompiledParam, Option<String>);

/// A reference parameter of `rt`, or why not.
fn reference_param(rt: ResourceType, name: &str) -> Result<&'static crate::index::CompiledParam, String> {
    indexed_param(rt.as_str(), name)
        .filter(|p| p.kind == SearchParamType::Reference)
        .ok_or_else(|| format!("'{name}' is not a reference parameter of {rt}"))
}

/// The resource types a reference parameter may point to (empty: any).
fn targets(rt: ResourceType, param: &str) -> Vec<ResourceType> {
    fhir_spec::spec()
        .search_param(rt.as_str(), param)
        .map(|d| d.target.iter().filter_map(|t| ResourceType::parse(t)).collect())
        .unwrap_or_default()
}

/// Resolve a chained or `_has` parameter name into its hops, the parameter finally
/// tested, and that parameter's modifier.
fn resolve_chain(rt: ResourceType, name: &str) -> Result<Resolved, String> {
    if let Some(rest) = name.strip_prefix("_has:") {
        let mut parts = rest.splitn(3, ':');
        let (src, param, tail) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        if tail.is_empty() {
            return Err(format!("'{name}' must read _has:Type:reference:parameter"));
        }
        let source = ResourceType::parse(src).ok_or_else(|| format!("'{src}' is not a resource type"))?;
        let p = reference_param(source, param)?;
        let allowed = targets(source, param);
        if !allowed.is_empty() && !allowed.contains(&rt) {
            return Err(format!("{source}.{param} never refers to a {rt}"));
        }
        let (mut hops, last, modifier) = resolve_chain(source, tail)?;
        hops.insert(0, Hop::Reverse { source, param: p.code });
        return Ok((hops, last, modifier));
    }
    if let Some((head, tail)) = name.split_once('.') {
        let (pname, type_modifier) = match head.split_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (head, None),
        };
        let p = reference_param(rt, pname)?;
        let next = tail.split([':', '.']).next().unwrap_or(tail);
        let candidates: Vec<ResourceType> = match type_modifier {
            Some(t) => vec![ResourceType::parse(t).ok_or_else(|| format!("'{t}' is not a resource type"))?],
            None => targets(rt, pname)
                .into_iter()
                .filter(|t| next == "_has" || indexed_param(t.as_str(), next).is_some())
                .collect(),
        };
        let target = match candidates.as_slice() {
            [one] => *one,
            [] => return Err(format!("no resource that {rt}.{pname} refers to has a parameter '{next}'")),
            many => {
                let names: Vec<&str> = many.iter().map(|t| t.as_str()).collect();
                let first = names.first().copied().unwrap_or_default();
                return Err(format!(
                    "'{head}' may refer to {}; name one, e.g. {pname}:{first}.{tail}",
                    names.join(", ")
                ));
            }
        };
        let (mut hops, last, modifier) = resolve_chain(target, tail)?;
        hops.insert(0, Hop::Forward { param: p.code, target });
        return Ok((hops, last, modifier));
    }
    let (code, modifier) = match name.split_once(':') {
        Some((c, m)) => (c, Some(m.to_string())),
        None => (name, None),
    };
    let p = indexed_param(rt.as_str(), code).ok_or_else(|| format!("'{code}' is not a search parameter of {rt}"))?;
    Ok((Vec::new(), p, modifier))
}

/// `Source:param[:Target]`, `Source:*`, or `*` (every reference of the searched type).
fn parse_include(searched: ResourceType, raw: &str, reverse: bool, iterate: bool) -> Result<Include, String> {
    let mut parts = raw.split(':');
    let src = parts.next().unwrap_or_default();
    let source = if src == "*" {
        searched
    } else {
        ResourceType::parse(src).ok_or_else(|| format!("'{src}' is not a resource type (expected Type:parameter)"))?
    };
    let param = match parts.next() {
        None | Some("*") => None,
        Some(p) => {
            let found = indexed_param(source.as_str(), p)
                .filter(|d| d.kind == SearchParamType::Reference)
                .ok_or_else(|| format!("'{p}' is not a reference parameter of {source}"))?;
            Some(found.code)
        }
    };
    let target = match parts.next() {
        None => None,
        Some(t) => Some(ResourceType::parse(t).ok_or_else(|| format!("'{t}' is not a resource type"))?),
    };
    Ok(Include { source, param, target, reverse, iterate })
}

fn split_prefix(value: &str) -> (Prefix, &str) {
    let prefix = match value.get(..2) {
        Some("eq") => Prefix::Eq,
        Some("ne") => Prefix::Ne,
        Some("gt") => Prefix::Gt,
        Some("lt") => Prefix::Lt,
        Some("ge") => Prefix::Ge,
        Some("le") => Prefix::Le,
        Some("sa") => Prefix::Sa,
        Some("eb") => Prefix::Eb,
        Some("ap") => Prefix::Ap,
        _ => return (Prefix::Eq, value),
    };
    (prefix, &value[2..])
}

/// The number and the half-open range its written precision implies: `100` → [99.5,
/// 100.5), `1.50` → [1.495, 1.505), `1e2` → [50, 150).
fn number_range(text: &str) -> Option<(f64, f64, f64)> {
    let v: f64 = text.parse().ok().filter(|v: &f64| v.is_finite())?;
    let (mantissa, exp) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().ok()?),
        None => (text, 0),
    };
    let decimals = mantissa.split_once('.').map_or(0, |(_, d)| d.len()) as i32;
    let half = 0.5 * 10f64.powi(exp - decimals);
    Some((v, v - half, v + half))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Result<Query, Issue> {
        parse_query(ResourceType::parse("Patient").unwrap(), s)
    }

    #[test]
    fn parses_criteria() {
        let query =
            q("identifier=urn:snils%7C112-233-445%2095&family=%D0%81%D0%BB%D0%BA%D0%B8%D0%BD,Smith&_count=5&foo=1")
                .unwrap();
        assert_eq!(query.count, Some(5));
        assert_eq!(query.ignored, vec!["foo"]);
        assert_eq!(
            query.clauses[0].any_of,
            vec![Predicate::Token {
                system: Some(Some("urn:snils".into())),
                code: Some("112-233-445 95".into()),
                not: false
            }]
        );
        assert_eq!(query.clauses[1].any_of.len(), 2);
        assert_eq!(
            query.clauses[1].any_of[0],
            Predicate::String { value: "елкин".into(), exact: false, contains: false }
        );
        assert!(matches!(
            q("birthdate=ge1980").unwrap().clauses[0].any_of[0],
            Predicate::Date { prefix: Prefix::Ge, .. }
        ));
        assert_eq!(
            q("general-practitioner=Practitioner/1").unwrap().clauses[0].any_of[0],
            Predicate::Reference { resource_type: Some("Practitioner".into()), id: Some("1".into()), url: None }
        );
    }

    #[test]
    fn rejects_what_it_cannot_do_naming_the_parameter() {
        let e = q("birthdate=yesterday").unwrap_err();
        assert_eq!(e.expression, vec!["birthdate"]);
        assert_eq!(q("name:text=x").unwrap_err().code, IssueType::NotSupported);
        assert_eq!(q("identifier:of-type=x|y").unwrap_err().expression, vec!["identifier"]);
        let obs = |s: &str| parse_query(ResourceType::parse("Observation").unwrap(), s);
        assert_eq!(
            obs("component-code-value-quantity=8480-6").unwrap_err().expression,
            vec!["component-code-value-quantity"]
        );
        assert!(obs("component-code-value-quantity=8480-6$gt140").is_ok());
        assert_eq!(obs("code-value-quantity=8480-6$high").unwrap_err().expression, vec!["code-value-quantity"]);
        assert_eq!(q("identifier:of-type=http://t|MR|12").unwrap().clauses[0].param, "identifier:of-type");
        assert_eq!(
            q("general-practitioner:identifier=urn:x|7").unwrap().clauses[0].param,
            "general-practitioner:identifier"
        );
        let ambiguous = q("general-practitioner.name=x").unwrap_err();
        assert_eq!(ambiguous.expression, vec!["general-practitioner.name"]);
        assert!(ambiguous.diagnostics.contains("general-practitioner:Practitioner.name"), "{}", ambiguous.diagnostics);
        assert_eq!(q("general-practitioner:Practitioner.name=x").unwrap().clauses[0].path.len(), 1);
        assert_eq!(q("_text=cough").unwrap().clauses[0].any_of, vec![Predicate::Terms(vec!["cough".into()])]);
        assert_eq!(q("_content=,").unwrap_err().expression, vec!["_content"]);
        assert_eq!(q("_sort=shoe-size").unwrap_err().expression, vec!["_sort"]);
        assert_eq!(q("_sort=-birthdate,name").unwrap().sort.len(), 2);
        assert!(q("_include=Patient:general-practitioner").unwrap().includes[0].param.is_some());
        assert!(q("_include=Patient:gender").is_err());
        assert_eq!(number_range("100"), Some((100.0, 99.5, 100.5)));
        assert_eq!(number_range("1e2"), Some((100.0, 50.0, 150.0)));
        assert!(number_range("abc").is_none());
        assert!(q("_count=x").is_err());
    }
}
