//! The FHIR adapter of the booking operations (`Appointment/$find`, `$book`, `$hold`):
//! request parameters in, `booking::ops` calls, FHIR responses out. Registered at wiring
//! time, so `fhir-rest` names no domain crate.

use fhir_rest::operations::{Level, Operations};
use fhir_rest::{Body, FhirError, Method, Response};

/// Add the booking operations to `ops`.
pub(crate) fn register(ops: &mut Operations) {
    ops.register("$find", Level::Type, Some("Appointment"), &[Method::Get], |_, h, r, _| {
        let mut q = booking::ops::FindQuery::default();
        for (k, v) in form_urlencoded::parse(r.query.as_bytes()) {
            let v = Some(v.into_owned());
            match k.as_ref() {
                "start" => q.start = v,
                "end" => q.end = v,
                "specialty" => q.specialty = v,
                "service-type" => q.service_type = v,
                "practitioner" => q.practitioner = v,
                "location" => q.location = v,
                "organization" => q.organization = v,
                "patient" => q.patient = v,
                "_count" => q.count = v.and_then(|c| c.parse().ok()),
                _ => {}
            }
        }
        Ok(Response::json(200, booking::ops::find(h, &q)?))
    });
    for (name, status) in [("$book", "booked"), ("$hold", "pending")] {
        ops.register(name, Level::Type, Some("Appointment"), &[Method::Post], move |e, h, r, _| {
            let Body::Json(params) = &r.body else {
                return Err(FhirError::bad_request(format!("{name} takes a Parameters resource")));
            };
            let written = booking::ops::book(h, booking::ops::BookRequest::from_parameters(params)?, status)?;
            let mut response = Response::json(201, written.resource.unwrap_or_default());
            response.location = Some(e.url(&format!("Appointment/{}/_history/{}", written.id, written.version)));
            Ok(response)
        });
    }
}
