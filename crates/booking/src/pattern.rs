//! Working patterns: the `Schedule` extension saying when a schedule's slots are (days of
//! the week, hours in the place's time zone, visit length, slot type, online or not),
//! with the dates it is off (holidays, absences), and the slots it plans for a span of
//! days. Profile: `docs/profiles/scheduling.md`.

use jiff::civil::{Date, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::Value;

/// `Schedule.extension`: the time zone of the place (`valueCode`, an IANA name).
pub const TIMEZONE: &str = "https://medkarta.org/fhir/StructureDefinition/schedule-timezone";
/// `Schedule.extension` (complex, repeating): one working period.
pub const PATTERN: &str = "https://medkarta.org/fhir/StructureDefinition/working-pattern";
/// `Schedule.extension` (repeating): a span without slots (`valuePeriod`, local dates or
/// instants).
pub const UNAVAILABLE: &str = "https://medkarta.org/fhir/StructureDefinition/schedule-unavailable";

/// The time zone when a schedule names none.
pub const DEFAULT_TIMEZONE: &str = "Europe/Moscow";

/// One working period of a pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Period {
    pub days: Vec<Weekday>,
    pub start: Time,
    pub end: Time,
    pub minutes: i64,
    /// `Slot.appointmentType`'s coding (`None`: a routine visit).
    pub slot_type: Option<Value>,
    /// Bookable by patients themselves (else only by the registrar).
    pub online: bool,
    pub from: Option<Date>,
    pub until: Option<Date>,
}

/// A schedule's working pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub tz: TimeZone,
    pub tz_name: String,
    pub periods: Vec<Period>,
    /// Spans without slots, as instants `[start, end)`.
    pub off: Vec<(Timestamp, Timestamp)>,
}

/// A slot a pattern plans.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub start: Timestamp,
    pub end: Timestamp,
    /// Index into [`Pattern::periods`].
    pub period: usize,
}

fn day(code: &str) -> Option<Weekday> {
    Some(match code {
        "mon" => Weekday::Monday,
        "tue" => Weekday::Tuesday,
        "wed" => Weekday::Wednesday,
        "thu" => Weekday::Thursday,
        "fri" => Weekday::Friday,
        "sat" => Weekday::Saturday,
        "sun" => Weekday::Sunday,
        _ => return None,
    })
}

fn extensions<'a>(v: &'a Value, url: &str) -> Vec<&'a Value> {
    v["extension"].as_array().into_iter().flatten().filter(|e| e["url"] == url).collect()
}

/// An instant from a FHIR date or dateTime, a date meaning its local midnight in `tz`.
fn instant(s: &str, tz: &TimeZone) -> Option<Timestamp> {
    if s.len() == 10 {
        return s.parse::<Date>().ok()?.to_zoned_datetime(tz.clone()).ok().map(|z| z.timestamp());
    }
    s.parse::<Timestamp>().ok()
}

impl Pattern {
    /// The pattern of a Schedule (`Ok(None)`: it has none), or what is wrong with it.
    pub fn of(schedule: &Value) -> Result<Option<Pattern>, String> {
        let tz_name = extensions(schedule, TIMEZONE)
            .into_iter()
            .find_map(|e| e["valueCode"].as_str())
            .unwrap_or(DEFAULT_TIMEZONE)
            .to_string();
        let tz = TimeZone::get(&tz_name).map_err(|_| format!("'{tz_name}' is not a time zone (e.g. Europe/Minsk)"))?;
        let mut periods = Vec::new();
        for p in extensions(schedule, PATTERN) {
            let part = |name: &str| extensions(p, name);
            let days = part("day").iter().filter_map(|d| d["valueCode"].as_str()).map(day).collect::<Option<Vec<_>>>();
            let days = days.filter(|d| !d.is_empty()).ok_or("a working period needs days (mon ... sun)")?;
            let time = |name: &str| {
                part(name).first().and_then(|t| t["valueTime"].as_str()).and_then(|t| t.parse::<Time>().ok())
            };
            let (Some(start), Some(end)) = (time("start"), time("end")) else {
                return Err("a working period needs a start and an end time (hh:mm:ss)".into());
            };
            let minutes = part("minutes").first().and_then(|m| m["valuePositiveInt"].as_i64()).unwrap_or(0);
            if !(5..=480).contains(&minutes) {
                return Err("a visit lasts from 5 to 480 minutes (minutes)".into());
            }
            if end <= start {
                return Err(format!("a working period ends after it starts ({start} - {end})"));
            }
            let date = |name: &str| {
                part(name).first().and_then(|d| d["valueDate"].as_str()).and_then(|d| d.parse::<Date>().ok())
            };
            periods.push(Period {
                days,
                start,
                end,
                minutes,
                slot_type: part("slotType").first().map(|c| c["valueCoding"].clone()).filter(|c| c.is_object()),
                online: part("online").first().and_then(|o| o["valueBoolean"].as_bool()).unwrap_or(true),
                from: date("from"),
                until: date("until"),
            });
        }
        if periods.is_empty() {
            return Ok(None);
        }
        let mut off = Vec::new();
        for u in extensions(schedule, UNAVAILABLE) {
            let p = &u["valuePeriod"];
            let start = p["start"].as_str().and_then(|s| instant(s, &tz));
            // a date as the end: the whole of that day
            let end = p["end"].as_str().and_then(|s| {
                if s.len() == 10 {
                    s.parse::<Date>().ok()?.tomorrow().ok().map(|d| d.to_string())
                } else {
                    Some(s.into())
                }
            });
            let end = end.and_then(|s| instant(&s, &tz));
            match (start, end) {
                (Some(s), Some(e)) if s < e => off.push((s, e)),
                _ => return Err("an unavailable period needs a start before its end".into()),
            }
        }
        Ok(Some(Pattern { tz, tz_name, periods, off }))
    }

    /// The slots of the local days `from ..= to`, in time order.
    pub fn plan(&self, from: Date, to: Date) -> Vec<Planned> {
        let mut out = Vec::new();
        let mut d = from;
        while d <= to {
            for (i, p) in self.periods.iter().enumerate() {
                if !p.days.contains(&d.weekday()) || p.from.is_some_and(|f| d < f) || p.until.is_some_and(|u| d > u) {
                    continue;
                }
                let mut t = p.start;
                loop {
                    let Ok(next) = t.checked_add(p.minutes.minutes()) else { break };
                    if next > p.end || next <= t {
                        break;
                    }
                    let at =
                        |time: Time| d.to_datetime(time).to_zoned_datetime(self.tz.clone()).ok().map(|z| z.timestamp());
                    if let (Some(start), Some(end)) = (at(t), at(next))
                        && start < end
                        && !self.off.iter().any(|(s, e)| start < *e && *s < end)
                    {
                        out.push(Planned { start, end, period: i });
                    }
                    t = next;
                }
            }
            match d.tomorrow() {
                Ok(n) => d = n,
                Err(_) => break,
            }
        }
        out.sort_by_key(|p| p.start);
        out
    }

    /// Today in the schedule's place.
    pub fn today(&self) -> Date {
        Timestamp::now().to_zoned_datetime(self.tz.clone()).date()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn schedule(tz: &str, extra: Vec<Value>) -> Value {
        let mut ext = vec![
            json!({"url": TIMEZONE, "valueCode": tz}),
            json!({"url": PATTERN, "extension": [
                {"url": "day", "valueCode": "mon"}, {"url": "day", "valueCode": "wed"},
                {"url": "start", "valueTime": "08:00:00"}, {"url": "end", "valueTime": "09:00:00"},
                {"url": "minutes", "valuePositiveInt": 15}
            ]}),
            json!({"url": PATTERN, "extension": [
                {"url": "day", "valueCode": "tue"},
                {"url": "start", "valueTime": "14:00:00"}, {"url": "end", "valueTime": "14:50:00"},
                {"url": "minutes", "valuePositiveInt": 20}, {"url": "online", "valueBoolean": false}
            ]}),
        ];
        ext.extend(extra);
        json!({"resourceType": "Schedule", "extension": ext})
    }

    fn date(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn a_week_of_slots_in_local_time() {
        let p = Pattern::of(&schedule("Europe/Minsk", vec![])).unwrap().unwrap();
        // Monday 7 December 2026 .. Sunday 13th: Mon 4, Tue 2 (14:40 + 20 > 14:50), Wed 4
        let slots = p.plan(date("2026-12-07"), date("2026-12-13"));
        assert_eq!(slots.len(), 10);
        assert_eq!(slots[0].start.to_string(), "2026-12-07T05:00:00Z", "08:00 in Minsk (UTC+3)");
        assert_eq!(slots[4].start.to_string(), "2026-12-08T11:00:00Z");
        assert_eq!((slots[4].end - slots[4].start).as_secs(), 20 * 60);
        assert!(!p.periods[slots[4].period].online);
        let vl = Pattern::of(&schedule("Asia/Vladivostok", vec![])).unwrap().unwrap();
        assert_eq!(vl.plan(date("2026-12-07"), date("2026-12-07"))[0].start.to_string(), "2026-12-06T22:00:00Z");
    }

    #[test]
    fn holidays_and_absences_have_no_slots() {
        let off = vec![
            json!({"url": UNAVAILABLE, "valuePeriod": {"start": "2026-12-08", "end": "2026-12-08"}}),
            json!({"url": UNAVAILABLE, "valuePeriod": {"start": "2026-12-09T05:30:00Z", "end": "2026-12-09T06:00:00Z"}}),
        ];
        let p = Pattern::of(&schedule("Europe/Minsk", off)).unwrap().unwrap();
        let slots = p.plan(date("2026-12-07"), date("2026-12-09"));
        assert_eq!(slots.len(), 4 + 2, "Tuesday off; Wednesday 08:30-09:00 off");
    }

    #[test]
    fn a_bad_pattern_is_explained() {
        let bad = |ext: Value| Pattern::of(&json!({"resourceType": "Schedule", "extension": [ext]})).unwrap_err();
        assert!(bad(json!({"url": TIMEZONE, "valueCode": "Mars/Olympus"})).contains("time zone"));
        let period = |minutes: i64, end: &str| {
            json!({"url": PATTERN, "extension": [{"url": "day", "valueCode": "mon"},
                {"url": "start", "valueTime": "10:00:00"}, {"url": "end", "valueTime": end},
                {"url": "minutes", "valuePositiveInt": minutes}]})
        };
        assert!(bad(period(0, "11:00:00")).contains("minutes"));
        assert!(bad(period(15, "09:00:00")).contains("ends after it starts"));
        assert!(Pattern::of(&json!({"resourceType": "Schedule"})).unwrap().is_none());
    }

    #[test]
    fn summer_time_changes_keep_local_hours() {
        // Berlin moves its clocks on 29 March 2026: 08:00 is 07:00Z before and 06:00Z after
        let p = Pattern::of(&schedule("Europe/Berlin", vec![])).unwrap().unwrap();
        let slots = p.plan(date("2026-03-23"), date("2026-03-30"));
        assert_eq!(slots[0].start.to_string(), "2026-03-23T07:00:00Z");
        assert_eq!(slots.last().unwrap().start.to_string(), "2026-03-30T06:45:00Z");
    }
}
