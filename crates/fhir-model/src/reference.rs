//! Parsing of `Reference.reference` strings.

use crate::{Id, ResourceType, Version, is_valid_id};

/// What a `Reference.reference` string points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// `Patient/123` or `Patient/123/_history/2`, possibly behind an absolute base URL.
    Literal { base: Option<String>, resource_type: ResourceType, id: Id, version: Option<Version> },
    /// `#p1`: a contained resource (`#` alone is the containing resource).
    Contained(String),
    /// `urn:uuid:...` or `urn:oid:...`: a placeholder inside a Bundle.
    Urn(String),
    /// `Patient?identifier=...`: a conditional reference inside a transaction.
    Conditional { resource_type: ResourceType, query: String },
    /// Any other absolute URL (an external resource we cannot interpret).
    External(String),
}

impl Reference {
    /// Parse a reference string; `None` if it is not a valid FHIR reference.
    pub fn parse(s: &str) -> Option<Reference> {
        if s.is_empty() || s.trim() != s {
            return None;
        }
        if let Some(frag) = s.strip_prefix('#') {
            return Some(Reference::Contained(frag.to_string()));
        }
        if s.starts_with("urn:uuid:") || s.starts_with("urn:oid:") {
            return Some(Reference::Urn(s.to_string()));
        }
        if let Some((rt, query)) = s.split_once('?') {
            let resource_type = ResourceType::parse(rt)?;
            return Some(Reference::Conditional { resource_type, query: query.to_string() });
        }
        let absolute = s.contains("://");
        let segments: Vec<&str> = s.split('/').collect();
        let n = segments.len();
        // [base/]Type/id[/_history/vid]
        let (type_idx, version) = if n >= 4 && segments.get(n - 2) == Some(&"_history") {
            (n - 4, segments.get(n - 1).and_then(|v| v.parse().ok()).map(Version))
        } else if n >= 2 {
            (n - 2, None)
        } else {
            return if absolute { Some(Reference::External(s.to_string())) } else { None };
        };
        let rt = segments.get(type_idx).copied().unwrap_or_default();
        let id = segments.get(type_idx + 1).copied().unwrap_or_default();
        match (ResourceType::parse(rt), is_valid_id(id)) {
            (Some(resource_type), true) => {
                let base = (type_idx > 0).then(|| segments[..type_idx].join("/"));
                if base.is_some() && !absolute {
                    return None;
                }
                Some(Reference::Literal { base, resource_type, id: Id(id.to_string()), version })
            }
            _ if absolute => Some(Reference::External(s.to_string())),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_reference_forms() {
        let p = ResourceType::parse("Patient").unwrap();
        assert_eq!(
            Reference::parse("Patient/123"),
            Some(Reference::Literal { base: None, resource_type: p, id: Id("123".into()), version: None })
        );
        assert_eq!(
            Reference::parse("http://x.org/fhir/Patient/1/_history/2"),
            Some(Reference::Literal {
                base: Some("http://x.org/fhir".into()),
                resource_type: p,
                id: Id("1".into()),
                version: Some(Version(2))
            })
        );
        assert_eq!(Reference::parse("#c1"), Some(Reference::Contained("c1".into())));
        assert!(matches!(Reference::parse("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"), Some(Reference::Urn(_))));
        assert!(matches!(Reference::parse("Patient?identifier=x|1"), Some(Reference::Conditional { .. })));
        assert_eq!(Reference::parse("Patient/a b"), None);
        assert_eq!(Reference::parse("Unknown/1"), None);
        assert_eq!(Reference::parse("123"), None);
        assert!(matches!(Reference::parse("http://example.org/some/thing"), Some(Reference::External(_))));
    }
}
