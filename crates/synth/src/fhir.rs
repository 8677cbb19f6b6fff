//! Small builders for the FHIR JSON datatypes the generator repeats: codings, codeable
//! concepts, references, quantities, and the code systems they use.

use serde_json::{Value, json};

pub const SNILS: &str = "http://medkarta.ru/identifier/snils";
pub const OMS: &str = "http://medkarta.ru/identifier/oms";
pub const FRMO: &str = "urn:oid:1.2.643.5.1.13.13.11.1461";
pub const OGRN: &str = "urn:oid:1.2.643.100.1";
pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
pub const LOINC: &str = "http://loinc.org";
pub const SCT: &str = "http://snomed.info/sct";
pub const UCUM: &str = "http://unitsofmeasure.org";
pub const ATC: &str = "http://www.whocc.no/atc";
pub const CVX: &str = "http://hl7.org/fhir/sid/cvx";
pub const VACCINE: &str = "http://medkarta.ru/CodeSystem/vaccine";
pub const TERM: &str = "http://terminology.hl7.org/CodeSystem/";

/// A Coding with system, code and display.
pub fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

/// A CodeableConcept with one coding and a text.
pub fn concept(system: &str, code: &str, display: &str, text: &str) -> Value {
    json!({"coding": [coding(system, code, display)], "text": text})
}

/// A CodeableConcept from an HL7 terminology code system (`condition-clinical`, ...).
pub fn term(system: &str, code: &str, display: &str) -> Value {
    json!({"coding": [coding(&format!("{TERM}{system}"), code, display)]})
}

/// An ICD-10 diagnosis as a CodeableConcept (Russian display and text).
pub fn icd(dx: (&str, &str)) -> Value {
    concept(ICD10, dx.0, dx.1, dx.1)
}

/// A literal reference `Type/id`.
pub fn reference(rtype: &str, id: &str) -> Value {
    json!({"reference": format!("{rtype}/{id}")})
}

/// A UCUM Quantity with a Russian unit label.
pub fn quantity(value: Value, unit: &str, ucum: &str) -> Value {
    json!({"value": value, "unit": unit, "system": UCUM, "code": ucum})
}
