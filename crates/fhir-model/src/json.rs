//! Strict JSON reading: FHIR forbids repeated property names, which a plain JSON parser
//! silently resolves by keeping the last one — a way to lose data or smuggle a second
//! value past a reviewer. [`duplicate_key`] finds the first repetition.

use std::collections::HashSet;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Where a property name repeats: a FHIRPath-like location such as `Patient.name[0].given`.
pub fn duplicate_key(json: &[u8]) -> Option<String> {
    let mut de = serde_json::Deserializer::from_slice(json);
    // malformed JSON (an error here) is reported by the real parse
    let found: Option<String> = (Check { path: "$".into() }).deserialize(&mut de).unwrap_or_default();
    found
}

struct Check {
    path: String,
}

impl<'de> DeserializeSeed<'de> for Check {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Check {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        let mut i = 0;
        while let Some(f) = seq.next_element_seed(Check { path: format!("{}[{i}]", self.path) })? {
            found = found.or(Some(f).flatten());
            i += 1;
        }
        Ok(found)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut seen = HashSet::new();
        let mut found = None;
        // the object's own name for readable paths: its resourceType, if it comes first
        let mut here = self.path.clone();
        while let Some(key) = map.next_key::<String>()? {
            if found.is_none() && !seen.insert(key.clone()) {
                found = Some(format!("{here}.{key}"));
            }
            if key == "resourceType" {
                let rt: serde_json::Value = map.next_value()?;
                if here == "$"
                    && let Some(rt) = rt.as_str()
                {
                    here = rt.to_string();
                }
                continue;
            }
            let inner = map.next_value_seed(Check { path: format!("{here}.{key}") })?;
            found = found.or(inner);
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_repeated_properties() {
        assert_eq!(
            duplicate_key(br#"{"resourceType":"Patient","gender":"male","gender":"female"}"#),
            Some("Patient.gender".into())
        );
        assert_eq!(
            duplicate_key(br#"{"resourceType":"Patient","name":[{"family":"A"},{"given":["x"],"given":["y"]}]}"#),
            Some("Patient.name[1].given".into())
        );
        assert_eq!(duplicate_key(br#"{"resourceType":"Observation","valueQuantity":{"value":1.50}}"#), None);
        assert_eq!(duplicate_key(br#"{"a":1"#), None);
    }
}
