//! SMART App Launch 2.0 scopes: `context/Type.perms[?query]` with context `patient`,
//! `user` or `system`, Type a resource type or `*`, perms a subset of `cruds` in that
//! order; SMART v1 `read`/`write`/`*` are read as `rs`/`cud`/`cruds`. Other scopes
//! (`openid`, `fhirUser`, `launch/patient`, `offline_access`...) are kept as words.

use fhir_model::ResourceType;

/// Whose data a resource scope opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// The patient in context (the token's `patient`).
    Patient,
    /// Whatever the user may see.
    User,
    /// A backend system, no user.
    System,
}

/// The interactions of a scope (SMART v2 letters).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Perms {
    pub create: bool,
    pub read: bool,
    pub update: bool,
    pub delete: bool,
    pub search: bool,
}

/// What a request does, in scope terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Perms {
    pub fn allows(&self, i: Interaction) -> bool {
        match i {
            Interaction::Create => self.create,
            Interaction::Read => self.read,
            Interaction::Update => self.update,
            Interaction::Delete => self.delete,
            Interaction::Search => self.search,
        }
    }
}

/// One resource scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceScope {
    pub context: Context,
    /// `None` for `*`.
    pub resource_type: Option<ResourceType>,
    pub perms: Perms,
    /// A SMART v2 granular restriction (`?category=...`), as written.
    pub query: Option<String>,
}

/// A parsed scope string.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scopes {
    pub resources: Vec<ResourceScope>,
    /// Every other scope word (`openid`, `fhirUser`, `launch/patient`, `offline_access`...).
    pub words: Vec<String>,
}

impl Scopes {
    /// Parse a space-separated scope string; the first malformed resource scope is an error.
    pub fn parse(s: &str) -> Result<Scopes, String> {
        let mut out = Scopes::default();
        for word in s.split_whitespace() {
            match parse_resource_scope(word)? {
                Some(r) => out.resources.push(r),
                None => out.words.push(word.to_string()),
            }
        }
        Ok(out)
    }

    pub fn has(&self, word: &str) -> bool {
        self.words.iter().any(|w| w == word)
    }

    /// Is `interaction` on `resource_type` allowed in `context`?
    pub fn allows(&self, context: Context, resource_type: ResourceType, interaction: Interaction) -> bool {
        self.resources.iter().any(|r| {
            r.context == context
                && r.resource_type.is_none_or(|t| t == resource_type)
                && r.perms.allows(interaction)
                && r.query.is_none()
        })
    }

    /// Keep only what `allowed` also grants (a client asks; its registration bounds it).
    pub fn intersect(&self, allowed: &Scopes) -> Scopes {
        let resources = self
            .resources
            .iter()
            .filter_map(|r| {
                let mut perms = Perms::default();
                for a in allowed.resources.iter().filter(|a| {
                    a.context == r.context
                        && (a.resource_type.is_none() || a.resource_type == r.resource_type)
                        && (a.query.is_none() || a.query == r.query)
                }) {
                    perms.create |= a.perms.create && r.perms.create;
                    perms.read |= a.perms.read && r.perms.read;
                    perms.update |= a.perms.update && r.perms.update;
                    perms.delete |= a.perms.delete && r.perms.delete;
                    perms.search |= a.perms.search && r.perms.search;
                }
                (perms != Perms::default()).then(|| ResourceScope { perms, ..r.clone() })
            })
            .collect();
        let words = self.words.iter().filter(|w| allowed.has(w)).cloned().collect();
        Scopes { resources, words }
    }
}

impl std::fmt::Display for Scopes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts: Vec<String> = self
            .resources
            .iter()
            .map(|r| {
                let ctx = match r.context {
                    Context::Patient => "patient",
                    Context::User => "user",
                    Context::System => "system",
                };
                let t = r.resource_type.map_or("*", |t| t.as_str());
                let p = &r.perms;
                let letters: String =
                    [(p.create, 'c'), (p.read, 'r'), (p.update, 'u'), (p.delete, 'd'), (p.search, 's')]
                        .iter()
                        .filter(|(on, _)| *on)
                        .map(|(_, c)| c)
                        .collect();
                let q = r.query.as_ref().map(|q| format!("?{q}")).unwrap_or_default();
                format!("{ctx}/{t}.{letters}{q}")
            })
            .collect();
        parts.extend(self.words.iter().cloned());
        f.write_str(&parts.join(" "))
    }
}

fn parse_resource_scope(word: &str) -> Result<Option<ResourceScope>, String> {
    let (context, rest) = match word.split_once('/') {
        Some(("patient", r)) => (Context::Patient, r),
        Some(("user", r)) => (Context::User, r),
        Some(("system", r)) => (Context::System, r),
        _ => return Ok(None),
    };
    let bad = || format!("'{word}' is not a SMART scope (context/Type.cruds, e.g. patient/Observation.rs)");
    let (rest, query) = match rest.split_once('?') {
        Some((r, q)) => (r, Some(q.to_string())),
        None => (rest, None),
    };
    let (ty, perms) = rest.split_once('.').ok_or_else(bad)?;
    let resource_type = match ty {
        "*" => None,
        t => Some(ResourceType::parse(t).ok_or_else(|| format!("'{t}' in scope '{word}' is not a resource type"))?),
    };
    let perms = match perms {
        "read" => Perms { read: true, search: true, ..Perms::default() },
        "write" => Perms { create: true, update: true, delete: true, ..Perms::default() },
        "*" => Perms { create: true, read: true, update: true, delete: true, search: true },
        letters => {
            // v2: a non-empty subsequence of "cruds", in that order
            let mut p = Perms::default();
            let mut order = "cruds".chars();
            for c in letters.chars() {
                if !order.by_ref().any(|o| o == c) {
                    return Err(bad());
                }
                match c {
                    'c' => p.create = true,
                    'r' => p.read = true,
                    'u' => p.update = true,
                    'd' => p.delete = true,
                    _ => p.search = true,
                }
            }
            if letters.is_empty() {
                return Err(bad());
            }
            p
        }
    };
    Ok(Some(ResourceScope { context, resource_type, perms, query }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> ResourceType {
        ResourceType::parse(s).unwrap()
    }

    #[test]
    fn v2_and_v1_scopes() {
        let s = Scopes::parse("openid fhirUser launch/patient patient/Observation.rs user/*.cruds system/Patient.read")
            .unwrap();
        assert!(s.has("openid") && s.has("launch/patient"));
        assert!(s.allows(Context::Patient, rt("Observation"), Interaction::Search));
        assert!(!s.allows(Context::Patient, rt("Observation"), Interaction::Create));
        assert!(!s.allows(Context::Patient, rt("Condition"), Interaction::Read));
        assert!(s.allows(Context::User, rt("Condition"), Interaction::Delete));
        assert!(s.allows(Context::System, rt("Patient"), Interaction::Search), "v1 read = rs");
        assert_eq!(
            s.to_string(),
            "patient/Observation.rs user/*.cruds system/Patient.rs openid fhirUser launch/patient"
        );
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in ["patient/Observation.sr", "patient/Observation.x", "patient/Nonsense.rs", "user/Patient", "user/*."]
        {
            assert!(Scopes::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn granted_is_what_was_asked_within_what_is_allowed() {
        let asked = Scopes::parse("patient/*.cruds openid offline_access").unwrap();
        let allowed = Scopes::parse("patient/*.rs patient/Observation.c openid").unwrap();
        let granted = asked.intersect(&allowed);
        assert_eq!(granted.to_string(), "patient/*.rs openid");
        let asked = Scopes::parse("patient/Observation.crs").unwrap();
        assert_eq!(asked.intersect(&allowed).to_string(), "patient/Observation.crs");
    }
}
