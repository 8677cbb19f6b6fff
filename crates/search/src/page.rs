//! Stable paging. A page link carries the position of the boundary row of the page it
//! comes from — its `_sort` values and its surrogate key, which together order every
//! result uniquely — and the next page is "the rows after that position" (keyset
//! paging). Rows created or deleted meanwhile never shift a page, and no result set is
//! kept on the server. The token is opaque to clients: base64url of a small JSON array.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use fhir_spec::SearchParamType;
use serde_json::{Value, json};

use crate::SortKey;

/// One `_sort` value of a row, as the index holds it.
#[derive(Debug, Clone, PartialEq)]
pub enum SortValue {
    /// The row has no value for the key (such rows sort last).
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

/// Where a row stands in a search's order.
#[derive(Debug, Clone, PartialEq)]
pub struct Position {
    /// The resource's surrogate key (the last tie-breaker).
    pub key: i64,
    /// One value per `_sort` key.
    pub values: Vec<SortValue>,
}

/// A page asked for by position: the rows after it (`next`), or before it (`previous`).
#[derive(Debug, Clone, PartialEq)]
pub struct PageRequest {
    pub forward: bool,
    pub from: Position,
}

/// The `_page` token of a page request.
pub fn encode(req: &PageRequest) -> String {
    let values: Vec<Value> = req
        .from
        .values
        .iter()
        .map(|v| match v {
            SortValue::Null => Value::Null,
            SortValue::Int(i) => json!(["i", i]),
            SortValue::Real(f) => json!(["f", f]),
            SortValue::Text(s) => json!(["s", s]),
        })
        .collect();
    let doc = json!([if req.forward { "n" } else { "p" }, req.from.key, values]);
    URL_SAFE_NO_PAD.encode(doc.to_string())
}

/// Read a `_page` token, checking it fits the search's `_sort` keys.
pub fn decode(token: &str, sort: &[SortKey]) -> Result<PageRequest, String> {
    let invalid = || format!("'{token}' is not a page of this search (use the links of the previous response)");
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let doc: Value = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
    let forward = match doc.get(0).and_then(Value::as_str) {
        Some("n") => true,
        Some("p") => false,
        _ => return Err(invalid()),
    };
    let key = doc.get(1).and_then(Value::as_i64).ok_or_else(invalid)?;
    let raw = doc.get(2).and_then(Value::as_array).ok_or_else(invalid)?;
    if raw.len() != sort.len() {
        return Err(invalid());
    }
    let mut values = Vec::new();
    for (v, k) in raw.iter().zip(sort) {
        let tag = v.get(0).and_then(Value::as_str);
        let value = match (v, tag, sort_type(k.kind)) {
            (Value::Null, _, _) => SortValue::Null,
            (_, Some("i"), "i") => SortValue::Int(v.get(1).and_then(Value::as_i64).ok_or_else(invalid)?),
            (_, Some("f"), "f") => SortValue::Real(v.get(1).and_then(Value::as_f64).ok_or_else(invalid)?),
            (_, Some("s"), "s") => SortValue::Text(v.get(1).and_then(Value::as_str).ok_or_else(invalid)?.to_string()),
            _ => return Err(invalid()),
        };
        values.push(value);
    }
    Ok(PageRequest { forward, from: Position { key, values } })
}

/// Which kind of value the index sorts a parameter type by.
fn sort_type(kind: SearchParamType) -> &'static str {
    match kind {
        SearchParamType::Date => "i",
        SearchParamType::Number | SearchParamType::Quantity => "f",
        _ => "s",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_must_fit_the_sort() {
        let sort = vec![
            SortKey { param: "birthdate", kind: SearchParamType::Date, descending: true },
            SortKey { param: "family", kind: SearchParamType::String, descending: false },
            SortKey { param: "value-quantity", kind: SearchParamType::Quantity, descending: false },
        ];
        let req = PageRequest {
            forward: false,
            from: Position {
                key: 42,
                values: vec![SortValue::Int(-5), SortValue::Text("иванов".into()), SortValue::Null],
            },
        };
        let token = encode(&req);
        assert!(token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{token}");
        assert_eq!(decode(&token, &sort), Ok(req.clone()));
        assert!(decode(&token, &sort[..2]).is_err(), "another _sort");
        let mut wrong = req;
        wrong.from.values[0] = SortValue::Text("1956".into());
        assert!(decode(&encode(&wrong), &sort).is_err(), "a text value for a date key");
        assert!(decode("not-a-token", &sort).is_err());
    }
}
