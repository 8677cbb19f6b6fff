//! Appointments (a domain crate over the guard): schedules with working patterns
//! ([`pattern`]), their slots generated ahead by jobs ([`generate`]), the rules that make
//! booking safe on every write path ([`rules`]: a slot is one appointment's, enforced by a
//! unique key in the database), reminders before a visit ([`remind`]), and the operations
//! `$find` and `$book` ([`ops`]).
//! Profile: `docs/profiles/scheduling.md`.

pub mod generate;
pub mod ops;
pub mod pattern;
pub mod remind;
pub mod rules;
pub mod waitlist;

pub use generate::{ACTOR, Generate};
pub use remind::Remind;
pub use rules::{AppointmentRule, ScheduleRule, Settings, SlotRule};

/// `meta.tag` system of booking: `generated` (a slot made from a working pattern),
/// `online` (patients book it themselves).
pub const BOOKING: &str = "https://medkarta.org/fhir/CodeSystem/booking";
/// The job queue of slot generation.
pub const QUEUE: &str = "booking";

/// A short stable hash of a text (FNV-1a), for ids made of longer names.
pub(crate) fn short_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}
