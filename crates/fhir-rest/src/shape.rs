//! `_summary` and `_elements`: returning part of each resource, marked `SUBSETTED` so
//! that no client mistakes it for the whole.

use search::Summary;
use serde_json::{Map, Value, json};

/// Reduce a resource as asked; `None` leaves it whole.
pub fn subset(resource: Value, summary: Summary, elements: Option<&[String]>) -> Value {
    let Value::Object(obj) = resource else { return resource };
    let rt = obj.get("resourceType").and_then(Value::as_str).unwrap_or_default().to_string();
    let Some(def) = fhir_spec::spec().type_def(&rt) else { return Value::Object(obj) };
    let mandatory = |k: &str| def.element(k).is_some_and(|e| e.min > 0);
    let keep: Box<dyn Fn(&str) -> bool> = match (elements, summary) {
        // `value` keeps `valueQuantity` (a choice element by any of its names)
        (Some(list), _) => Box::new(move |k| {
            list.iter().any(|e| e == k || k.strip_prefix(e.as_str()).is_some_and(choice_suffix)) || mandatory(k)
        }),
        (None, Summary::True) => {
            Box::new(|k| def.summary.iter().any(|s| k == s || k.strip_prefix(s.as_str()).is_some_and(choice_suffix)))
        }
        (None, Summary::Text) => Box::new(move |k| k == "text" || mandatory(k)),
        (None, Summary::Data) => Box::new(|k| k != "text"),
        (None, Summary::False | Summary::Count) => return Value::Object(obj),
    };
    let mut out = Map::new();
    for (k, v) in obj {
        let base = k.trim_start_matches('_');
        if matches!(base, "resourceType" | "id" | "meta") || keep(base) {
            out.insert(k, v);
        }
    }
    let meta = out.entry("meta").or_insert_with(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        let tags = m.entry("tag").or_insert_with(|| json!([]));
        if let Some(t) = tags.as_array_mut() {
            t.push(json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}));
        }
    }
    Value::Object(out)
}

/// `valueQuantity` belongs to summary element `value` (choice types).
fn choice_suffix(rest: &str) -> bool {
    rest.starts_with(|c: char| c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets() {
        let p = json!({"resourceType": "Patient", "id": "1", "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
            "name": [{"family": "A"}], "photo": [{"contentType": "image/png"}], "gender": "female"});
        let s = subset(p.clone(), Summary::True, None);
        assert!(s.get("name").is_some() && s.get("photo").is_none() && s.get("text").is_none());
        assert_eq!(s["meta"]["tag"][0]["code"], "SUBSETTED");
        let d = subset(p.clone(), Summary::Data, None);
        assert!(d.get("text").is_none() && d.get("photo").is_some());
        let e = subset(p.clone(), Summary::False, Some(&["gender".to_string()]));
        assert_eq!(e.as_object().unwrap().keys().collect::<Vec<_>>(), vec!["resourceType", "id", "gender", "meta"]);
        assert_eq!(subset(p.clone(), Summary::False, None), p);
        let o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": 1}, "note": [{"text": "n"}]});
        let s = subset(o.clone(), Summary::True, None);
        assert!(s.get("valueQuantity").is_some() && s.get("note").is_none());
        // `_elements=value` names the choice element: `valueQuantity` stays
        let e = subset(o, Summary::False, Some(&["value".to_string()]));
        assert!(e.get("valueQuantity").is_some() && e.get("note").is_none(), "{e}");
    }
}
