//! What a page shows of a FHIR resource, in the reader's language: the text of a coded
//! concept, dates, quantities, reference ranges and flags, names. Pure functions over
//! `serde_json::Value`; the templates escape whatever they return.

use serde_json::Value;

use crate::i18n::Lang;

/// A CodeableConcept as words: in Russian its `text` (our records keep the Russian
/// there), in English the first coding's display; either falls back to the other, then
/// to the code.
pub(crate) fn concept(c: &Value, lang: Lang) -> String {
    let text = c["text"].as_str().filter(|s| !s.is_empty());
    let display = c["coding"].as_array().and_then(|cs| cs.iter().find_map(|c| c["display"].as_str()));
    let code = c["coding"][0]["code"].as_str();
    let first = match lang {
        Lang::Ru => text.or(display),
        Lang::En => display.or(text),
    };
    first.or(code).unwrap_or("").to_string()
}

/// The first coding's code.
pub(crate) fn code(c: &Value) -> String {
    c["coding"][0]["code"].as_str().unwrap_or("").to_string()
}

/// A FHIR date or dateTime as the reader writes it: `03.05.2024 14:30` in Russian,
/// `2024-05-03 14:30` in English (the time as recorded, without seconds).
pub(crate) fn date(v: &Value, lang: Lang) -> String {
    let Some(s) = v.as_str() else { return String::new() };
    let (day, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t.get(..5).unwrap_or(t))),
        None => (s, None),
    };
    let day = match (lang, day.split('-').collect::<Vec<_>>().as_slice()) {
        (Lang::Ru, [y, m, d]) => format!("{d}.{m}.{y}"),
        (Lang::Ru, [y, m]) => format!("{m}.{y}"),
        _ => day.to_string(),
    };
    match time {
        Some(t) => format!("{day} {t}"),
        None => day,
    }
}

/// A Quantity as `5.4 ммоль/л`.
pub(crate) fn quantity(q: &Value) -> String {
    let value = match &q["value"] {
        Value::Number(n) => n.to_string(),
        _ => return String::new(),
    };
    match q["unit"].as_str().or_else(|| q["code"].as_str()) {
        Some(u) if !u.is_empty() => format!("{value} {u}"),
        _ => value,
    }
}

/// A number of a Quantity.
pub(crate) fn number(q: &Value) -> Option<f64> {
    match &q["value"] {
        Value::Number(n) => n.to_string().parse().ok(),
        _ => None,
    }
}

/// An observation's value as text (a quantity, a concept, a string, components).
pub(crate) fn value(o: &Value, lang: Lang) -> String {
    if o["valueQuantity"].is_object() {
        return quantity(&o["valueQuantity"]);
    }
    if o["valueCodeableConcept"].is_object() {
        return concept(&o["valueCodeableConcept"], lang);
    }
    if let Some(s) = o["valueString"].as_str() {
        return s.to_string();
    }
    if let Some(parts) = o["component"].as_array() {
        let values: Vec<String> = parts.iter().map(|c| number_text(&c["valueQuantity"])).collect();
        let unit = parts.first().and_then(|c| c["valueQuantity"]["unit"].as_str()).unwrap_or("");
        return format!("{} {unit}", values.join("/")).trim().to_string();
    }
    String::new()
}

fn number_text(q: &Value) -> String {
    match &q["value"] {
        Value::Number(n) => n.to_string(),
        _ => "—".into(),
    }
}

/// The reference range as `3.9–6.1` (or `< 5`, `> 1`).
pub(crate) fn range(o: &Value) -> String {
    let r = &o["referenceRange"][0];
    if let Some(t) = r["text"].as_str() {
        return t.to_string();
    }
    match (number_text_opt(&r["low"]), number_text_opt(&r["high"])) {
        (Some(l), Some(h)) => format!("{l}–{h}"),
        (Some(l), None) => format!("> {l}"),
        (None, Some(h)) => format!("< {h}"),
        (None, None) => String::new(),
    }
}

fn number_text_opt(q: &Value) -> Option<String> {
    matches!(q["value"], Value::Number(_)).then(|| number_text(q))
}

/// High or low: the recorded interpretation, else the value against the range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    Normal,
    High,
    Low,
    Abnormal,
}

impl Flag {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Flag::Normal => "flag.normal",
            Flag::High => "flag.high",
            Flag::Low => "flag.low",
            Flag::Abnormal => "flag.abnormal",
        }
    }

    /// The CSS class of the flag.
    pub(crate) fn class(self) -> &'static str {
        match self {
            Flag::Normal => "ok",
            Flag::High | Flag::Low | Flag::Abnormal => "out",
        }
    }
}

pub(crate) fn flag(o: &Value) -> Option<Flag> {
    let interpreted = o["interpretation"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|i| i["coding"].as_array().into_iter().flatten())
        .find_map(|c| c["code"].as_str());
    match interpreted {
        Some("H" | "HH" | "HU" | ">") => return Some(Flag::High),
        Some("L" | "LL" | "LU" | "<") => return Some(Flag::Low),
        Some("A" | "AA") => return Some(Flag::Abnormal),
        Some("N") => return Some(Flag::Normal),
        _ => {}
    }
    let v = number(&o["valueQuantity"])?;
    let r = &o["referenceRange"][0];
    if number(&r["high"]).is_some_and(|h| v > h) {
        Some(Flag::High)
    } else if number(&r["low"]).is_some_and(|l| v < l) {
        Some(Flag::Low)
    } else if r.is_object() {
        Some(Flag::Normal)
    } else {
        None
    }
}

/// A person's name: family, given and patronymic as written (`text` if there is one).
pub(crate) fn name(r: &Value) -> String {
    let names = r["name"].as_array();
    let n =
        names.and_then(|ns| ns.iter().find(|n| n["use"] == "official").or_else(|| ns.first())).unwrap_or(&Value::Null);
    if let Some(t) = n["text"].as_str() {
        return t.to_string();
    }
    let mut parts: Vec<&str> = n["family"].as_str().into_iter().collect();
    parts.extend(n["given"].as_array().into_iter().flatten().filter_map(Value::as_str));
    if parts.is_empty() {
        return r["name"].as_str().unwrap_or("").to_string();
    }
    parts.join(" ")
}

/// The display of a reference: its `display`, else the name of the included resource.
pub(crate) fn reference(r: &Value, included: &std::collections::HashMap<String, Value>) -> String {
    if let Some(d) = r["display"].as_str() {
        return d.to_string();
    }
    let target = r["reference"].as_str().unwrap_or("");
    included.get(target).map(name).filter(|n| !n.is_empty()).unwrap_or_default()
}

/// The identifier of `system` (first one).
pub(crate) fn identifier(r: &Value, system: &str) -> Option<String> {
    r["identifier"]
        .as_array()?
        .iter()
        .find(|i| i["system"] == system)
        .and_then(|i| i["value"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn words_dates_values() {
        let c = json!({"coding": [{"code": "I10", "display": "Essential hypertension"}], "text": "Гипертензия"});
        assert_eq!(concept(&c, Lang::Ru), "Гипертензия");
        assert_eq!(concept(&c, Lang::En), "Essential hypertension");
        assert_eq!(date(&json!("2024-05-03T14:30:00+03:00"), Lang::Ru), "03.05.2024 14:30");
        assert_eq!(date(&json!("2024-05-03"), Lang::En), "2024-05-03");
        let o = json!({"valueQuantity": {"value": 7.2, "unit": "ммоль/л"},
                       "referenceRange": [{"low": {"value": 3.9}, "high": {"value": 6.1}}]});
        assert_eq!(value(&o, Lang::Ru), "7.2 ммоль/л");
        assert_eq!(range(&o), "3.9–6.1");
        assert_eq!(flag(&o), Some(Flag::High));
        let bp = json!({"component": [{"valueQuantity": {"value": 150, "unit": "мм рт. ст."}},
                                      {"valueQuantity": {"value": 95, "unit": "мм рт. ст."}}]});
        assert_eq!(value(&bp, Lang::Ru), "150/95 мм рт. ст.");
        let p = json!({"name": [{"use": "official", "family": "Иванова", "given": ["Анна", "Петровна"]}]});
        assert_eq!(name(&p), "Иванова Анна Петровна");
    }
}
