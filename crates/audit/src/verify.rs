//! `medkarta audit verify`: walk the chain from the first link, recompute every hash, and
//! name the first entry that is not what was chained. Also checked: every entry is
//! chained or waiting to be, the patients' index matches the entries, and every signed
//! checkpoint (in the database and in the witness file) is genuine and reproduced by the
//! chain — so a cut-off tail is caught as well as an edited row.

use std::collections::BTreeMap;

use store::Store;
use store::audit::{AuditQuery, chain_hash};

use crate::AuditError;
use crate::checkpoint::Checkpoint;

/// What is wrong with the log (the first problem found).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The entry at this position is not the one chained (edited, or entries swapped or
    /// inserted here).
    Changed { pos: i64, seq: i64 },
    /// The entry chained at this position is gone.
    Removed { pos: i64, seq: i64 },
    /// Links are missing: the chain jumps from `after` to `next`.
    Gap { after: i64, next: i64 },
    /// An entry that was never chained (written behind the server's back).
    Unchained { seq: i64 },
    /// A signed checkpoint names a position the chain no longer reaches (tail removed).
    Truncated { checkpoint: i64, head: i64 },
    /// A checkpoint whose signature is not valid, or whose hash the chain does not
    /// reproduce.
    Checkpoint { pos: i64, why: &'static str },
    /// The index behind the patients' view does not match the entries.
    PatientIndex { expected: i64, found: i64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Changed { pos, seq } => write!(
                f,
                "entry {seq} at position {pos} was changed (or entries were inserted or reordered there): its hash does not follow from the chain"
            ),
            Problem::Removed { pos, seq } => write!(f, "entry {seq} at position {pos} was removed"),
            Problem::Gap { after, next } => {
                write!(f, "links {}..{} were removed (the chain jumps from {after} to {next})", after + 1, next - 1)
            }
            Problem::Unchained { seq } => write!(f, "entry {seq} was inserted outside the chain"),
            Problem::Truncated { checkpoint, head } => {
                write!(f, "the log was cut: a signed checkpoint covers position {checkpoint}, the chain ends at {head}")
            }
            Problem::Checkpoint { pos, why } => write!(f, "checkpoint at position {pos}: {why}"),
            Problem::PatientIndex { expected, found } => write!(
                f,
                "the patients' index was altered: the entries name {expected} patient links, the index holds {found}"
            ),
        }
    }
}

/// The result of a verification.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Links checked.
    pub links: i64,
    /// Entries not chained yet (appended on PostgreSQL moments ago).
    pub pending: i64,
    /// Checkpoints checked.
    pub checkpoints: usize,
    pub problem: Option<Problem>,
}

/// Links read per query.
const PAGE: usize = 5000;

/// Verify the whole log. `public_key` checks the checkpoints' signatures (none: the
/// checkpoints are compared with the chain only); `witness` adds checkpoints kept outside
/// the database; `progress` is told the position reached and the total.
pub fn verify(
    store: &dyn Store,
    public_key: Option<&[u8]>,
    witness: &[Checkpoint],
    progress: &mut dyn FnMut(i64, i64),
) -> Result<Report, AuditError> {
    let counts = store.audit_counts(0)?;
    let mut report = Report { pending: counts.pending, ..Report::default() };
    let mut checkpoints: BTreeMap<i64, Checkpoint> = BTreeMap::new();
    for c in crate::checkpoint::stored(store)?.into_iter().chain(witness.iter().cloned()) {
        if let Some(k) = public_key
            && !c.verify(k)
        {
            report.problem = Some(Problem::Checkpoint { pos: c.pos, why: "its signature is not valid" });
            return Ok(report);
        }
        checkpoints.insert(c.pos, c);
    }
    report.checkpoints = checkpoints.len();
    let (mut pos, mut prev) = (0i64, String::new());
    let mut patient_links = 0i64;
    loop {
        let rows = store.audit(&AuditQuery::Chain { after: pos, limit: PAGE })?;
        if rows.is_empty() {
            break;
        }
        for r in &rows {
            let Some((at_pos, stored_hash)) = &r.link else { continue };
            if *at_pos != pos + 1 {
                report.problem = Some(Problem::Gap { after: pos, next: *at_pos });
                return Ok(report);
            }
            pos = *at_pos;
            if r.entry.is_empty() {
                report.problem = Some(Problem::Removed { pos, seq: r.seq });
                return Ok(report);
            }
            let h = chain_hash(&prev, pos, r.seq, r.at, &r.patients, &r.entry);
            if h != *stored_hash {
                report.problem = Some(Problem::Changed { pos, seq: r.seq });
                return Ok(report);
            }
            if let Some(c) = checkpoints.get(&pos)
                && c.hash != h
            {
                report.problem = Some(Problem::Checkpoint { pos, why: "the chain does not reproduce its hash" });
                return Ok(report);
            }
            prev = h;
            patient_links += r.patients.split(' ').filter(|p| !p.is_empty()).count() as i64;
            report.links += 1;
        }
        progress(pos, counts.links);
    }
    if let Some((&cp, _)) = checkpoints.iter().next_back()
        && cp > pos
    {
        report.problem = Some(Problem::Truncated { checkpoint: cp, head: pos });
        return Ok(report);
    }
    if let Some(r) = store.audit(&AuditQuery::Unchained { limit: 1 })?.into_iter().next() {
        report.problem = Some(Problem::Unchained { seq: r.seq });
        return Ok(report);
    }
    let found = store.audit_counts(pos)?.patient_rows;
    if found != patient_links {
        report.problem = Some(Problem::PatientIndex { expected: patient_links, found });
    }
    Ok(report)
}
