//! Calendar arithmetic for windows and freezes, in the policy's time zone and right across daylight-saving changes.
//!
//! Whether a window is open at an instant is exact: the instant's wall-clock time in the zone is inside `[from, to)`
//! on one of the window's days. Finding the next opening (or closing) uses the fact that "open" can only change
//! where the wall clock passes a window's `from` (or `to`) — every instant that wall time maps to, both of them when
//! the clock falls back — or where the zone's offset changes (a jump forward can land inside a window, a jump back
//! can re-enter one). Every such candidate is checked against the exact predicate and the earliest wins.
//!
//! Wall times that do not exist (the hour skipped in spring) mean the first instant after the skip; wall times that
//! happen twice (the hour repeated in autumn) mean the first occurrence for a start and the second for an end, so a
//! freeze is never shortened by a clock change.

use chrono::TimeZone as _;
use chrono::{DateTime, Datelike, Duration as TimeDelta, LocalResult, NaiveDate, NaiveDateTime, Offset, Timelike, Utc};
use chrono_tz::Tz;

use super::model::{Freeze, FreezeBound, TimeOfDay, Window};

/// How far ahead the next opening or closing is looked for. Weekly windows recur within 7 days; the margin covers a
/// day skipped by a zone (Samoa skipped 2011-12-30).
const HORIZON_DAYS: i64 = 15;

/// True when `t` is inside one of the windows.
pub fn is_open(windows: &[Window], tz: Tz, t: DateTime<Utc>) -> bool {
    let local = t.with_timezone(&tz);
    let weekday = local.weekday();
    let secs = local.num_seconds_from_midnight();
    windows
        .iter()
        .any(|w| w.days.iter().any(|d| d.0 == weekday) && secs >= w.from.minutes() * 60 && secs < w.to.minutes() * 60)
}

/// The earliest instant at or after `after` at which a window is open.
pub fn next_opening(windows: &[Window], tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if is_open(windows, tz, after) {
        return Some(after);
    }
    candidates(windows, tz, after, |w| w.from)
        .into_iter()
        .filter(|c| *c > after && is_open(windows, tz, *c))
        .min()
}

/// The earliest instant after `t` at which no window is open (`None` when the windows cover the whole week).
pub fn next_closing(windows: &[Window], tz: Tz, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if !is_open(windows, tz, t) {
        return Some(t);
    }
    candidates(windows, tz, t, |w| w.to)
        .into_iter()
        .filter(|c| *c > t && !is_open(windows, tz, *c))
        .min()
}

/// Every instant near `t` where a window's `edge` falls, plus the zone's offset changes.
fn candidates(windows: &[Window], tz: Tz, t: DateTime<Utc>, edge: fn(&Window) -> TimeOfDay) -> Vec<DateTime<Utc>> {
    let today = t.with_timezone(&tz).date_naive();
    let mut out = transitions(tz, t, t + TimeDelta::days(HORIZON_DAYS + 1));
    for offset in -1..=HORIZON_DAYS {
        let Some(day) = today.checked_add_signed(TimeDelta::days(offset)) else {
            continue;
        };
        for w in windows.iter().filter(|w| w.days.iter().any(|d| d.0 == day.weekday())) {
            out.extend(wall_instants(tz, wall(day, edge(w))));
        }
    }
    out
}

/// The wall-clock time `time` on `day`; `24:00` is the next day's midnight.
fn wall(day: NaiveDate, time: TimeOfDay) -> NaiveDateTime {
    match time.to_naive() {
        Some(t) => day.and_time(t),
        None => (day + TimeDelta::days(1))
            .and_hms_opt(0, 0, 0)
            .unwrap_or(day.and_time(chrono::NaiveTime::MIN)),
    }
}

/// Every instant showing wall time `naive`: one, two (clock falls back), or, when the clock skips it, the first
/// instant after the skip.
pub(crate) fn wall_instants(tz: Tz, naive: NaiveDateTime) -> Vec<DateTime<Utc>> {
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(a) => vec![a.with_timezone(&Utc)],
        LocalResult::Ambiguous(a, b) => vec![a.with_timezone(&Utc), b.with_timezone(&Utc)],
        LocalResult::None => gap_end(tz, naive).into_iter().collect(),
    }
}

/// The first instant after the skipped wall-clock span containing `naive`.
fn gap_end(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    chrono_tz::GapInfo::new(&naive, &tz)
        .and_then(|g| g.end)
        .map(|end| end.with_timezone(&Utc))
}

/// The instant a period starting at wall time `naive` starts: the first occurrence, or the end of a skip.
pub(crate) fn start_instant(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    wall_instants(tz, naive).into_iter().min()
}

/// The instant a period ending at wall time `naive` ends: the last occurrence, or the end of a skip.
pub(crate) fn end_instant(tz: Tz, naive: NaiveDateTime) -> Option<DateTime<Utc>> {
    wall_instants(tz, naive).into_iter().max()
}

/// The instants in `(from, to]` at which the zone's UTC offset changes.
pub(crate) fn transitions(tz: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let offset = |t: DateTime<Utc>| tz.offset_from_utc_datetime(&t.naive_utc()).fix();
    let step = TimeDelta::minutes(30);
    let mut out = Vec::new();
    let mut a = from;
    while a < to {
        let b = a + step;
        if offset(a) != offset(b) {
            // The change happens in (a, b]: bisect to the second.
            let (mut lo, mut hi) = (a, b);
            while hi - lo > TimeDelta::seconds(1) {
                let mid = lo + (hi - lo) / 2;
                if offset(mid) == offset(a) {
                    lo = mid;
                } else {
                    hi = mid;
                }
            }
            out.push(hi);
        }
        a = b;
    }
    out
}

/// A freeze's span as instants: `[start, end)`.
pub fn freeze_span(freeze: &Freeze, tz: Tz) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    Some((bound_start(&freeze.from, tz)?, bound_end(&freeze.to, tz)?))
}

fn bound_start(bound: &FreezeBound, tz: Tz) -> Option<DateTime<Utc>> {
    match bound {
        FreezeBound::Date(d) => start_instant(tz, d.and_hms_opt(0, 0, 0)?),
        FreezeBound::Local(n) => start_instant(tz, *n),
        FreezeBound::Instant(i) => Some(i.with_timezone(&Utc)),
    }
}

fn bound_end(bound: &FreezeBound, tz: Tz) -> Option<DateTime<Utc>> {
    match bound {
        // The day is included: the freeze ends when the next day starts.
        FreezeBound::Date(d) => start_instant(tz, d.succ_opt()?.and_hms_opt(0, 0, 0)?),
        FreezeBound::Local(n) => end_instant(tz, *n),
        FreezeBound::Instant(i) => Some(i.with_timezone(&Utc)),
    }
}

/// The freezes in effect at `t`, followed by those that continue them without a gap, with the instant the last of
/// them ends: the earliest the gate can pass.
pub fn freezes_at(freezes: &[Freeze], tz: Tz, t: DateTime<Utc>) -> Option<(Vec<&Freeze>, DateTime<Utc>)> {
    let spans: Vec<(&Freeze, DateTime<Utc>, DateTime<Utc>)> = freezes
        .iter()
        .filter_map(|f| freeze_span(f, tz).map(|(s, e)| (f, s, e)))
        .collect();
    let mut chain = Vec::new();
    let mut at = t;
    // Each step moves `at` strictly later, to the end of a freeze containing it; there are finitely many freezes.
    while let Some((f, _, end)) = spans
        .iter()
        .filter(|(f, s, e)| *s <= at && at < *e && !chain.iter().any(|c: &&Freeze| std::ptr::eq(*c, *f)))
        .max_by_key(|(_, _, e)| *e)
    {
        chain.push(*f);
        at = *end;
    }
    (!chain.is_empty()).then_some((chain, at))
}

/// The next freeze that starts after `t`, with its start.
pub fn next_freeze(freezes: &[Freeze], tz: Tz, t: DateTime<Utc>) -> Option<(&Freeze, DateTime<Utc>)> {
    freezes
        .iter()
        .filter_map(|f| freeze_span(f, tz).map(|(s, _)| (f, s)))
        .filter(|(_, s)| *s > t)
        .min_by_key(|(_, s)| *s)
}

/// True when the wall time of `t` happens twice in `tz` (the repeated hour in autumn).
pub(crate) fn is_ambiguous(tz: Tz, t: DateTime<Utc>) -> bool {
    matches!(
        tz.from_local_datetime(&t.with_timezone(&tz).naive_local()),
        LocalResult::Ambiguous(..)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn finds_berlin_transitions_to_the_second() {
        let t = transitions(
            chrono_tz::Europe::Berlin,
            utc("2026-03-28T00:00:00Z"),
            utc("2026-03-30T00:00:00Z"),
        );
        assert_eq!(t, vec![utc("2026-03-29T01:00:00Z")]);
        let t = transitions(
            chrono_tz::Europe::Berlin,
            utc("2026-10-24T00:00:00Z"),
            utc("2026-10-26T00:00:00Z"),
        );
        assert_eq!(t, vec![utc("2026-10-25T01:00:00Z")]);
    }

    #[test]
    fn skipped_wall_time_starts_after_the_skip() {
        let naive = NaiveDate::from_ymd_opt(2026, 3, 29)
            .unwrap()
            .and_hms_opt(2, 30, 0)
            .unwrap();
        assert_eq!(
            start_instant(chrono_tz::Europe::Berlin, naive),
            Some(utc("2026-03-29T01:00:00Z"))
        );
    }
}
