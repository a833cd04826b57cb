//! Windows and freezes in the policy's time zone, across daylight-saving changes.
//!
//! Europe/Berlin 2026: on 2026-03-29 the clock jumps from 02:00 to 03:00 (01:00 UTC, CET to CEST); on 2026-10-25 it
//! falls back from 03:00 to 02:00 (01:00 UTC), so 02:00–03:00 happens twice. America/New_York 2026: 2026-03-08
//! 02:00 to 03:00 (07:00 UTC); 2026-11-01 02:00 back to 01:00 (06:00 UTC).

use chrono::{DateTime, Utc};
use tollgate_domain::gate::policy::window::{freeze_span, is_open, next_closing, next_opening};
use tollgate_domain::gate::policy::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn policy(zone: &str, max_wait: &str, body: &str) -> Policy {
    let text = format!("version: 1\nname: t\ntimezone: {zone}\nmax_wait: {max_wait}\n{body}");
    parse_policy("t.yaml", &text).unwrap_or_else(|e| panic!("{e}"))
}

fn window(days: &str, from: &str, to: &str) -> String {
    format!("windows:\n  - days: [{days}]\n    from: \"{from}\"\n    to: \"{to}\"\n")
}

struct Row {
    name: &'static str,
    zone: &'static str,
    windows: String,
    now: &'static str,
    open: bool,
    /// The next opening when closed, the next closing when open.
    next: Option<&'static str>,
}

fn row(
    name: &'static str,
    zone: &'static str,
    windows: String,
    now: &'static str,
    open: bool,
    next: Option<&'static str>,
) -> Row {
    Row {
        name,
        zone,
        windows,
        now,
        open,
        next,
    }
}

#[test]
fn windows_open_and_close_correctly_across_dst() {
    let berlin = "Europe/Berlin";
    let ny = "America/New_York";
    let rows = [
        // Spring forward in Berlin.
        row(
            "a window whose start is skipped opens when the clock jumps",
            berlin,
            window("sun", "02:30", "04:00"),
            "2026-03-28T12:00:00Z",
            false,
            Some("2026-03-29T01:00:00Z"),
        ),
        row(
            "a window inside the skipped hour does not exist that day",
            berlin,
            window("sun", "02:00", "02:45"),
            "2026-03-28T12:00:00Z",
            false,
            Some("2026-04-05T00:00:00Z"),
        ),
        row(
            "a window straddling the jump is open before it (CET)",
            berlin,
            window("sun", "01:00", "04:00"),
            "2026-03-29T00:30:00Z",
            true,
            Some("2026-03-29T02:00:00Z"),
        ),
        row(
            "and after it (CEST)",
            berlin,
            window("sun", "01:00", "04:00"),
            "2026-03-29T01:30:00Z",
            true,
            Some("2026-03-29T02:00:00Z"),
        ),
        row(
            "the next opening across the change uses the new offset",
            berlin,
            window("mon", "09:00", "16:00"),
            "2026-03-27T17:00:00Z",
            false,
            Some("2026-03-30T07:00:00Z"),
        ),
        row(
            "the week before, the old one",
            berlin,
            window("mon", "09:00", "16:00"),
            "2026-03-20T17:00:00Z",
            false,
            Some("2026-03-23T08:00:00Z"),
        ),
        // Fall back in Berlin.
        row(
            "the repeated hour, first pass (CEST)",
            berlin,
            window("sun", "02:00", "03:00"),
            "2026-10-25T00:20:00Z",
            true,
            Some("2026-10-25T02:00:00Z"),
        ),
        row(
            "the repeated hour, second pass (CET)",
            berlin,
            window("sun", "02:00", "03:00"),
            "2026-10-25T01:20:00Z",
            true,
            Some("2026-10-25T02:00:00Z"),
        ),
        row(
            "a window in the repeated hour reopens on the second pass",
            berlin,
            window("sun", "02:15", "02:45"),
            "2026-10-25T00:50:00Z",
            false,
            Some("2026-10-25T01:15:00Z"),
        ),
        row(
            "a window ending in the repeated hour reopens when the clock falls back",
            berlin,
            window("sun", "01:00", "02:30"),
            "2026-10-25T00:45:00Z",
            false,
            Some("2026-10-25T01:00:00Z"),
        ),
        row(
            "the next opening across the change uses the new offset",
            berlin,
            window("mon", "09:00", "16:00"),
            "2026-10-23T17:00:00Z",
            false,
            Some("2026-10-26T08:00:00Z"),
        ),
        // New York.
        row(
            "NY: Monday 09:00 after spring forward is 13:00 UTC",
            ny,
            window("mon, tue, wed, thu, fri", "09:00", "17:00"),
            "2026-03-06T23:00:00Z",
            false,
            Some("2026-03-09T13:00:00Z"),
        ),
        row(
            "NY: a skipped start opens at 03:00 EDT",
            ny,
            window("sun", "02:30", "05:00"),
            "2026-03-08T06:00:00Z",
            false,
            Some("2026-03-08T07:00:00Z"),
        ),
        row(
            "NY: Monday 09:00 after fall back is 14:00 UTC",
            ny,
            window("mon, tue, wed, thu, fri", "09:00", "17:00"),
            "2026-10-30T22:00:00Z",
            false,
            Some("2026-11-02T14:00:00Z"),
        ),
        row(
            "NY: 01:30 happens twice and is open both times (EDT)",
            ny,
            window("sun", "01:00", "02:00"),
            "2026-11-01T05:30:00Z",
            true,
            Some("2026-11-01T07:00:00Z"),
        ),
        row(
            "NY: ... (EST)",
            ny,
            window("sun", "01:00", "02:00"),
            "2026-11-01T06:30:00Z",
            true,
            Some("2026-11-01T07:00:00Z"),
        ),
        // Midnight: adjacent windows join, 24:00 ends the day.
        row(
            "adjacent windows across midnight are one",
            berlin,
            format!(
                "{}  - days: [sat]\n    from: \"00:00\"\n    to: \"06:00\"\n",
                window("fri", "22:00", "24:00")
            ),
            "2026-11-20T22:30:00Z",
            true,
            Some("2026-11-21T05:00:00Z"),
        ),
        row(
            "a window covering the whole week never closes",
            berlin,
            window("mon, tue, wed, thu, fri, sat, sun", "00:00", "24:00"),
            "2026-03-29T01:30:00Z",
            true,
            None,
        ),
    ];
    let mut failures = Vec::new();
    for r in &rows {
        let p = policy(r.zone, "1d", &r.windows);
        let windows = p.windows.as_ref().unwrap();
        let now = t(r.now);
        let open = is_open(windows, p.zone(), now);
        let next = if open {
            next_closing(windows, p.zone(), now)
        } else {
            next_opening(windows, p.zone(), now)
        };
        if open != r.open || next != r.next.map(t) {
            failures.push(format!("{}: open {open}, next {next:?}", r.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows wrong:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

#[test]
fn the_window_check_waits_for_the_opening_and_says_when_in_the_zone() {
    let p = policy("Europe/Berlin", "3d", &window("mon, tue, wed, thu", "09:00", "16:00"));
    // Friday 2026-03-27 18:00 CET; the clocks change on Sunday.
    let now = t("2026-03-27T17:00:00Z");
    let d = evaluate(&p, &Facts::new(now, now));
    let c = d.check(CheckKind::Window).unwrap();
    assert_eq!(c.status, CheckStatus::Wait);
    assert_eq!(c.earliest_pass, Some(t("2026-03-30T07:00:00Z")));
    assert_eq!(c.message, "window closed: next opens Mon 09:00 Europe/Berlin");
    assert_eq!(
        d.outcome,
        Outcome::Wait {
            recheck_at: t("2026-03-30T07:00:00Z")
        }
    );
}

#[test]
fn times_in_the_repeated_hour_show_which_one() {
    let p = policy("Europe/Berlin", "1d", &window("sun", "01:00", "02:30"));
    let now = t("2026-10-25T00:10:00Z"); // 02:10 CEST, open
    let d = evaluate(&p, &Facts::new(now, now));
    assert_eq!(
        d.check(CheckKind::Window).unwrap().message,
        "window open until 02:30 Europe/Berlin (CEST)"
    );
}

const FREEZE: &str =
    "freezes:\n  - name: year-end\n    from: 2026-12-20\n    to: 2027-01-04\n    reason: Year-end change freeze\n";

#[test]
fn freeze_boundaries_are_exact_in_the_zone() {
    // 3 weeks of max_wait, so the freeze waits rather than fails.
    let p = policy("Europe/Berlin", "21d", FREEZE);
    let status = |now: &str| {
        let now = t(now);
        let d = evaluate(&p, &Facts::new(now, now));
        let c = d.check(CheckKind::Freeze).unwrap().clone();
        (c.status, c.earliest_pass)
    };
    let end = Some(t("2027-01-04T23:00:00Z"));
    // Berlin is UTC+1 in winter: the freeze is [2026-12-19T23:00Z, 2027-01-04T23:00Z).
    assert_eq!(
        status("2026-12-19T22:59:59Z"),
        (CheckStatus::Pass, None),
        "one second before the start"
    );
    assert_eq!(
        status("2026-12-19T23:00:00Z"),
        (CheckStatus::Wait, end),
        "exactly at the start"
    );
    assert_eq!(
        status("2027-01-04T22:59:59Z"),
        (CheckStatus::Wait, end),
        "the last second of the inclusive end date"
    );
    assert_eq!(
        status("2027-01-04T23:00:00Z"),
        (CheckStatus::Pass, None),
        "the day after the end date"
    );
    let now = t("2026-12-28T09:00:00Z");
    let d = evaluate(&p, &Facts::new(now, now));
    assert_eq!(
        d.check(CheckKind::Freeze).unwrap().message,
        "freeze year-end (Year-end change freeze) until 2027-01-04 23:59 Europe/Berlin"
    );
}

#[test]
fn a_freeze_ending_beyond_max_wait_fails_and_one_ending_within_waits() {
    let p = policy("Europe/Berlin", "6h", FREEZE);
    let first = t("2027-01-04T16:00:00Z"); // 17:00 local, the freeze ends in 7h
    let d = evaluate(&p, &Facts::new(first, first));
    assert_eq!(d.outcome, Outcome::Fail);
    assert!(
        d.check(CheckKind::Freeze)
            .unwrap()
            .message
            .ends_with("; that is after the gate gives up at 23:00 Europe/Berlin (max_wait 6h)"),
        "{}",
        d.summary
    );
    let first = t("2027-01-04T17:00:00Z"); // the freeze ends in exactly 6h: waiting can work
    let d = evaluate(&p, &Facts::new(first, first));
    assert_eq!(
        d.outcome,
        Outcome::Wait {
            recheck_at: t("2027-01-04T23:00:00Z")
        }
    );
}

#[test]
fn freezes_that_follow_each_other_wait_for_the_last() {
    let body = "freezes:\n  - name: a\n    from: 2026-12-24\n    to: 2026-12-26\n  - name: b\n    from: 2026-12-27\n    to: 2026-12-27T12:00\n";
    let p = policy("Europe/Berlin", "21d", body);
    let now = t("2026-12-25T10:00:00Z");
    let d = evaluate(&p, &Facts::new(now, now));
    let c = d.check(CheckKind::Freeze).unwrap();
    assert_eq!(c.earliest_pass, Some(t("2026-12-27T11:00:00Z")));
    assert_eq!(
        c.message,
        "freeze a until 2026-12-26 23:59 Europe/Berlin, then freeze b until 2026-12-27 12:00 Europe/Berlin"
    );
}

#[test]
fn freeze_datetimes_in_skipped_or_repeated_hours_never_shorten_the_freeze() {
    let body = "freezes:\n  - name: spring\n    from: 2026-03-29T02:30\n    to: 2026-03-29T05:00\n  - name: autumn\n    from: 2026-10-25T02:30\n    to: 2026-10-25T02:45\n  - name: pinned\n    from: 2026-06-01T10:00:00Z\n    to: 2026-06-01T13:00:00+02:00\n";
    let p = policy("Europe/Berlin", "1d", body);
    let tz = p.zone();
    let spans: Vec<_> = p
        .freezes
        .as_ref()
        .unwrap()
        .iter()
        .map(|f| freeze_span(f, tz).unwrap())
        .collect();
    // 02:30 does not exist on 2026-03-29: the freeze starts when the clock jumps to 03:00 CEST.
    assert_eq!(spans[0], (t("2026-03-29T01:00:00Z"), t("2026-03-29T03:00:00Z")));
    // 02:30 and 02:45 happen twice on 2026-10-25: from the first 02:30 to the second 02:45.
    assert_eq!(spans[1], (t("2026-10-25T00:30:00Z"), t("2026-10-25T01:45:00Z")));
    // Explicit offsets are instants.
    assert_eq!(spans[2], (t("2026-06-01T10:00:00Z"), t("2026-06-01T11:00:00Z")));
}
