//! The policy as written: sections, checks and the small value types (durations, times of day, weekdays, time zones)
//! that check their own syntax while being read, so an error points at the offending scalar.
//!
//! Every struct denies unknown fields: a typo must never silently disable a check. A check section that is present
//! but empty (`approval:` with nothing under it) is an error too, for the same reason.

use std::collections::BTreeMap;
use std::fmt;
use std::marker::PhantomData;

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime};
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// The only policy format version this Tollgate reads.
pub const POLICY_VERSION: u32 = 1;

/// Durations are capped so that arithmetic on instants can never overflow.
const MAX_DURATION_SECS: i64 = 400 * 86_400;

/// A gate policy. A value returned by [`crate::gate::policy::parse_policy`] or [`Policy::with_overrides`] has been
/// validated: windows start before they end, freezes end after they begin, checks name what they check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Format version: 1.
    pub version: u32,
    pub name: String,
    /// The zone of every wall-clock time in the policy and in its messages. Required when the policy has windows or
    /// freezes; UTC otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<TimeZone>,
    /// The gate gives up (fails the job) once it has waited this long in total.
    pub max_wait: Duration,
    /// What a check that cannot be evaluated does, unless the check says otherwise.
    #[serde(default)]
    pub on_error: OnError,
    /// Weekly windows in which the gate may pass. Absent: any time.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub windows: Option<Vec<Window>>,
    /// Dates or times when the gate may not pass.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub freezes: Option<Vec<Freeze>>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub alarms: Option<AlarmsCheck>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub bake: Option<BakeCheck>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamCheck>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub approval: Option<ApprovalCheck>,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencyCheck>,
    /// Named groups of approvers, for `approval.groups`: each name's members are IAM ARN patterns or IAM Identity
    /// Center permission sets (`sso:<account>:<permission set>`). Declared here, so who may approve is versioned and
    /// reviewed with the policy, and the gate needs no directory to ask.
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub groups: Option<Groups>,
}

impl Policy {
    /// The policy's time zone (UTC when it names none).
    pub fn zone(&self) -> chrono_tz::Tz {
        self.timezone.map(|t| t.0).unwrap_or(chrono_tz::UTC)
    }
}

/// What a check that cannot be evaluated (an AWS error, a missing alarm) does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The check blocks: the gate fails. The default.
    #[default]
    FailClosed,
    /// The check is reported and ignored.
    FailOpen,
}

impl OnError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnError::FailClosed => "fail_closed",
            OnError::FailOpen => "fail_open",
        }
    }
}

/// A weekly window, `from` inclusive, `to` exclusive, on each of `days`, in the policy's time zone. A window may not
/// cross midnight: write `22:00`–`24:00` on one day and `00:00`–`06:00` on the next (adjacent windows join).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub days: Vec<Weekday>,
    pub from: TimeOfDay,
    pub to: TimeOfDay,
}

/// A change freeze or holiday. A date `from` starts at 00:00 of that day; a date `to` includes the whole day. A date
/// and time (`2026-11-26T18:00`) is wall-clock time in the policy's zone, or an instant when it carries an offset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Freeze {
    pub name: String,
    pub from: FreezeBound,
    pub to: FreezeBound,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// CloudWatch alarms that must be out of ALARM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlarmsCheck {
    /// Alarms by name; each must exist.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    /// Also every alarm carrying all of these tags.
    #[serde(default, deserialize_with = "unique_map", skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// Each alarm must have been out of ALARM continuously this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ok_for: Option<Duration>,
    /// An alarm in ALARM makes the gate wait up to this long (since it entered ALARM), then fail. Absent: fail at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

/// A minimum time since a stage succeeded, optionally with a minimum of traffic during it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BakeCheck {
    /// The stage whose success starts the bake: of this execution, or of `pipeline`'s latest execution.
    pub after_stage: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pipeline: Option<String>,
    pub duration: Duration,
    #[serde(default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub min_requests: Option<MinRequests>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

/// A CloudWatch metric that must total at least `at_least` between the stage's success and now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinRequests {
    pub namespace: String,
    pub metric: String,
    #[serde(default, deserialize_with = "unique_map", skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, String>,
    #[serde(default)]
    pub statistic: Statistic,
    pub at_least: f64,
}

/// How the metric's datapoints over the bake are totalled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Statistic {
    #[default]
    Sum,
    SampleCount,
}

impl Statistic {
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Sum => "Sum",
            Statistic::SampleCount => "SampleCount",
        }
    }
}

/// No failed, unrestored execution of an upstream pipeline (or one of its stages) in the last N minutes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamCheck {
    pub pipeline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    pub no_unrestored_failure_for: Duration,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

/// A recorded approval by an authorised principal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApprovalCheck {
    /// IAM ARN patterns; `*` matches any run of characters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<ArnPattern>,
    /// Groups whose members may approve: names declared under the policy's top-level `groups`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// An approval without a reason does not count. Default: true.
    #[serde(default = "yes")]
    pub reason_required: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

fn yes() -> bool {
    true
}

/// No other deployment in progress to the same environment (and wave).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencyCheck {
    pub environment: String,
    /// A number or a name (`1`, `canary`).
    #[serde(default, deserialize_with = "wave", skip_serializing_if = "Option::is_none")]
    pub wave: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

// ---------------------------------------------------------------------------------------------------------------
// Value types. Each validates inside its visitor, so serde_yaml attaches the scalar's own line and column.

/// Reads a string scalar through `parse`; errors are raised inside the visitor so they carry the scalar's position.
struct StrVisitor<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for StrVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        (self.parse)(v).map_err(E::custom)
    }

    // A bare number (`max_wait: 90`, `wave: 1`) is read as its text, so the parser's message explains what is missing.
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<T, E> {
        self.visit_str(&v.to_string())
    }
}

macro_rules! text_value {
    ($ty:ty, $expecting:literal, $parse:path) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(StrVisitor {
                    expecting: $expecting,
                    parse: $parse,
                })
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
    };
}

/// A positive duration written `90s`, `10m`, `2h`, `1h30m`, `1d` (units d, h, m, s, largest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(i64);

impl Duration {
    pub fn from_secs(secs: i64) -> Option<Duration> {
        (1..=MAX_DURATION_SECS).contains(&secs).then_some(Duration(secs))
    }

    pub fn as_secs(self) -> i64 {
        self.0
    }

    pub fn to_chrono(self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(self.0)
    }

    /// Parses the policy syntax. The error says what is wrong, for a message naming the field.
    pub fn parse(text: &str) -> Result<Duration, String> {
        let bad = |why: &str| format!("{text:?} is not a duration ({why}; write e.g. 90s, 10m, 2h, 1h30m, 1d)");
        let s = text.trim();
        if s.is_empty() {
            return Err(bad("it is empty"));
        }
        if s.starts_with('-') {
            return Err(bad("negative durations are not allowed"));
        }
        let units = [('d', 86_400i64), ('h', 3_600), ('m', 60), ('s', 1)];
        let mut total: i64 = 0;
        let mut last_unit = None::<usize>;
        let mut rest = s;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad("expected a number"));
            }
            let (number, after) = rest.split_at(digits);
            let Some(unit) = after.chars().next() else {
                return Err(bad("the number has no unit"));
            };
            let Some(index) = units.iter().position(|(u, _)| *u == unit) else {
                if unit == '.' {
                    return Err(bad("fractions are not supported: write 1h30m, not 1.5h"));
                }
                return Err(bad(&format!("unknown unit `{unit}`: use d, h, m or s")));
            };
            if last_unit.is_some_and(|l| l >= index) {
                return Err(bad("each unit at most once, largest first"));
            }
            last_unit = Some(index);
            let n: i64 = number.parse().map_err(|_| bad("the number is too large"))?;
            total = n
                .checked_mul(units[index].1)
                .and_then(|v| v.checked_add(total))
                .filter(|v| *v <= MAX_DURATION_SECS)
                .ok_or_else(|| bad("longer than 400d"))?;
            rest = after[unit.len_utf8()..].trim_start();
        }
        if total == 0 {
            return Err(bad("it is zero: a duration must be positive"));
        }
        Ok(Duration(total))
    }
}

/// Compact, exact, largest units first: `1h30m`, `1d2h`, `45s`.
pub(crate) fn compact_secs(secs: i64) -> String {
    if secs <= 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = secs;
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&compact_secs(self.0))
    }
}

impl std::str::FromStr for Duration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Duration::parse(s)
    }
}

text_value!(Duration, "a duration like 90s, 10m, 2h, 1h30m or 1d", Duration::parse);

/// A wall-clock time `HH:MM`, from `00:00` to `24:00` (the end of the day, only useful as a window's `to`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    minutes: u16,
}

impl TimeOfDay {
    pub const END_OF_DAY: TimeOfDay = TimeOfDay { minutes: 24 * 60 };

    pub fn new(hour: u16, minute: u16) -> Option<TimeOfDay> {
        let ok = (hour < 24 && minute < 60) || (hour == 24 && minute == 0);
        ok.then_some(TimeOfDay {
            minutes: hour * 60 + minute,
        })
    }

    /// Minutes since midnight, 0..=1440.
    pub fn minutes(self) -> u32 {
        u32::from(self.minutes)
    }

    /// As a `NaiveTime`; `24:00` has none (it is the next day's `00:00`).
    pub fn to_naive(self) -> Option<chrono::NaiveTime> {
        chrono::NaiveTime::from_hms_opt(self.minutes() / 60, self.minutes() % 60, 0)
    }

    pub fn parse(text: &str) -> Result<TimeOfDay, String> {
        let bad = || format!("{text:?} is not a time (expected HH:MM, 00:00 to 24:00)");
        let (h, m) = text.trim().split_once(':').ok_or_else(bad)?;
        let digits = |s: &str, max_len| !s.is_empty() && s.len() <= max_len && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
            return Err(bad());
        }
        TimeOfDay::new(h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?).ok_or_else(bad)
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.minutes / 60, self.minutes % 60)
    }
}

text_value!(TimeOfDay, "a time HH:MM", TimeOfDay::parse);

/// A day of the week: `mon` … `sun` or the full English name, any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Weekday(pub chrono::Weekday);

impl Weekday {
    pub fn parse(text: &str) -> Result<Weekday, String> {
        use chrono::Weekday::*;
        let day = match text.trim().to_ascii_lowercase().as_str() {
            "mon" | "monday" => Mon,
            "tue" | "tuesday" => Tue,
            "wed" | "wednesday" => Wed,
            "thu" | "thursday" => Thu,
            "fri" | "friday" => Fri,
            "sat" | "saturday" => Sat,
            "sun" | "sunday" => Sun,
            _ => {
                return Err(format!(
                    "unknown weekday {text:?} (expected mon, tue, wed, thu, fri, sat or sun)"
                ))
            }
        };
        Ok(Weekday(day))
    }
}

impl fmt::Display for Weekday {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_string().to_ascii_lowercase())
    }
}

text_value!(
    Weekday,
    "a weekday (mon, tue, wed, thu, fri, sat or sun)",
    Weekday::parse
);

/// An IANA time zone name (`Europe/Berlin`, `America/New_York`, `UTC`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimeZone(pub chrono_tz::Tz);

impl TimeZone {
    pub fn parse(text: &str) -> Result<TimeZone, String> {
        if let Ok(tz) = text.trim().parse::<chrono_tz::Tz>() {
            return Ok(TimeZone(tz));
        }
        let mut message = format!(
            "unknown time zone {} (expected an IANA name such as Europe/Berlin)",
            quoted_prefix(text, MAX_ZONE_NAME_CHARS)
        );
        if let Some(near) = nearest_zone(text.trim()) {
            message.push_str(&format!("; did you mean {near}?"));
        }
        Err(message)
    }

    pub fn name(self) -> &'static str {
        self.0.name()
    }
}

/// Longer than any IANA name (the longest has 32 characters): a value this long is quoted only in part, and no
/// name is suggested for it.
const MAX_ZONE_NAME_CHARS: usize = 64;

/// `text` quoted, cut to its first `max` characters with the length of the whole when it is longer: a message never
/// repeats a huge value.
fn quoted_prefix(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], text.len()),
    }
}

/// The closest IANA name by edit distance, if it is close enough to be the intended one. The distance is at least
/// the difference in length, so names more than 3 characters longer or shorter are not compared (which also keeps a
/// huge value from being compared with every name).
fn nearest_zone(text: &str) -> Option<&'static str> {
    let length = text.chars().count();
    if length > MAX_ZONE_NAME_CHARS {
        return None;
    }
    let wanted = text.to_ascii_lowercase();
    chrono_tz::TZ_VARIANTS
        .iter()
        .filter(|tz| tz.name().len().abs_diff(length) <= 3)
        .map(|tz| (edit_distance(&wanted, &tz.name().to_ascii_lowercase()), tz.name()))
        .filter(|(d, _)| *d <= 3)
        .min()
        .map(|(_, name)| name)
}

pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

impl fmt::Display for TimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

text_value!(TimeZone, "an IANA time zone name", TimeZone::parse);

/// One end of a freeze.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeBound {
    /// A whole day: as `from`, its first instant; as `to`, the day is included.
    Date(NaiveDate),
    /// A wall-clock time in the policy's zone.
    Local(NaiveDateTime),
    /// An instant (the text carried an offset or `Z`).
    Instant(DateTime<FixedOffset>),
}

impl FreezeBound {
    pub fn parse(text: &str) -> Result<FreezeBound, String> {
        let t = text.trim();
        if let Ok(d) = NaiveDate::parse_from_str(t, "%Y-%m-%d") {
            return Ok(FreezeBound::Date(d));
        }
        if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
            return Ok(FreezeBound::Instant(dt));
        }
        for format in [
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M",
            "%Y-%m-%dT%H:%M:%S",
            "%Y-%m-%d %H:%M:%S",
        ] {
            if let Ok(dt) = NaiveDateTime::parse_from_str(t, format) {
                return Ok(FreezeBound::Local(dt));
            }
        }
        Err(format!(
            "{text:?} is not a date or date and time (expected YYYY-MM-DD, YYYY-MM-DDTHH:MM, or RFC 3339 with \
             an offset)"
        ))
    }
}

impl fmt::Display for FreezeBound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreezeBound::Date(d) => write!(f, "{}", d.format("%Y-%m-%d")),
            FreezeBound::Local(dt) => write!(f, "{}", dt.format("%Y-%m-%dT%H:%M:%S")),
            FreezeBound::Instant(dt) => write!(f, "{}", dt.to_rfc3339()),
        }
    }
}

text_value!(FreezeBound, "a date YYYY-MM-DD or a date and time", FreezeBound::parse);

/// An IAM ARN pattern for approvers: starts with `arn:`; `*` matches any run of characters (`/` and `:` included).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ArnPattern(String);

impl ArnPattern {
    pub fn parse(text: &str) -> Result<ArnPattern, String> {
        let t = text.trim();
        if !t.starts_with("arn:") || t.chars().any(char::is_whitespace) || t.split(':').count() < 6 {
            return Err(format!(
                "{text:?} is not an IAM ARN pattern (expected e.g. arn:aws:iam::111122223333:role/ReleaseManager*)"
            ));
        }
        Ok(ArnPattern(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True when `arn` matches the pattern (`*` matches any run of characters, everything else literally).
    pub fn matches(&self, arn: &str) -> bool {
        glob_match(self.0.as_bytes(), arn.as_bytes())
    }
}

fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with backtracking to the last star: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

impl fmt::Display for ArnPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

text_value!(ArnPattern, "an IAM ARN pattern", ArnPattern::parse);

/// The role name prefix IAM Identity Center gives the role of a permission set in an account:
/// `AWSReservedSSO_<permission set>_<16 hex digits>`.
const SSO_ROLE_PREFIX: &str = "AWSReservedSSO_";

/// A member of an approver group: an IAM ARN pattern, or everyone signed in through an IAM Identity Center
/// permission set in one account (`sso:111122223333:ReleaseManager`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupMember {
    Arn(ArnPattern),
    SsoPermissionSet { account: String, permission_set: String },
}

impl GroupMember {
    pub fn parse(text: &str) -> Result<GroupMember, String> {
        let t = text.trim();
        let Some(rest) = t.strip_prefix("sso:") else {
            return ArnPattern::parse(t).map(GroupMember::Arn).map_err(|e| {
                format!("{e}, or an IAM Identity Center permission set written sso:<account>:<permission set>")
            });
        };
        let bad = || {
            format!(
                "{text:?} is not an IAM Identity Center permission set (expected sso:<12-digit account>:<permission \
                 set name>, e.g. sso:111122223333:ReleaseManager)"
            )
        };
        let (account, permission_set) = rest.split_once(':').ok_or_else(bad)?;
        // Permission set names are 1 to 32 of [A-Za-z0-9+=,.@_-] (IAM Identity Center CreatePermissionSet).
        let name_ok = !permission_set.is_empty()
            && permission_set.len() <= 32
            && permission_set
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c));
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) || !name_ok {
            return Err(bad());
        }
        Ok(GroupMember::SsoPermissionSet {
            account: account.to_string(),
            permission_set: permission_set.to_string(),
        })
    }

    /// True when the principal `arn` is a member. A permission set matches only its own role's sessions in its own
    /// account (`arn:<partition>:sts::<account>:assumed-role/AWSReservedSSO_<set>_<hex>/<session>`), exactly: not
    /// another set whose name merely starts the same.
    pub fn matches(&self, arn: &str) -> bool {
        match self {
            GroupMember::Arn(p) => p.matches(arn),
            GroupMember::SsoPermissionSet {
                account,
                permission_set,
            } => {
                let parts: Vec<&str> = arn.splitn(6, ':').collect();
                let [prefix, _partition, service, region, acct, resource] = parts.as_slice() else {
                    return false;
                };
                if *prefix != "arn" || *service != "sts" || !region.is_empty() || acct != account {
                    return false;
                }
                let Some(role_and_session) = resource.strip_prefix("assumed-role/") else {
                    return false;
                };
                let Some((role, session)) = role_and_session.split_once('/') else {
                    return false;
                };
                let Some((set, suffix)) = role.strip_prefix(SSO_ROLE_PREFIX).and_then(|r| r.rsplit_once('_')) else {
                    return false;
                };
                set == permission_set
                    && !session.is_empty()
                    && !suffix.is_empty()
                    && suffix.chars().all(|c| c.is_ascii_hexdigit())
            }
        }
    }
}

impl fmt::Display for GroupMember {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupMember::Arn(p) => write!(f, "{p}"),
            GroupMember::SsoPermissionSet {
                account,
                permission_set,
            } => write!(f, "sso:{account}:{permission_set}"),
        }
    }
}

text_value!(
    GroupMember,
    "an IAM ARN pattern or sso:<account>:<permission set>",
    GroupMember::parse
);

/// The policy's approver groups, by name. A name given twice is an error (a plain map would keep the last silently).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups(pub BTreeMap<String, Vec<GroupMember>>);

impl Groups {
    pub fn get(&self, name: &str) -> Option<&[GroupMember]> {
        self.0.get(name).map(Vec::as_slice)
    }
}

impl<'de> Deserialize<'de> for Groups {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct GroupsVisitor;
        impl<'de> Visitor<'de> for GroupsVisitor {
            type Value = Groups;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping of group names to lists of members")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Groups, A::Error> {
                let mut out = BTreeMap::new();
                while let Some(key) = map.next_key::<String>()? {
                    let members: Vec<GroupMember> = map.next_value()?;
                    if out.contains_key(&key) {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    out.insert(key, members);
                }
                Ok(Groups(out))
            }
        }
        d.deserialize_map(GroupsVisitor)
    }
}

impl Serialize for Groups {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Field helpers.

/// A present key must hold a value: `approval:` with nothing under it is an error, not a disabled check.
pub(crate) fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    match Option::<T>::deserialize(d)? {
        Some(value) => Ok(Some(value)),
        None => Err(de::Error::custom(NO_VALUE)),
    }
}

/// The message for a present key without a value; the parser points it at the empty value.
pub(crate) const NO_VALUE: &str = "has no value: give it one, or remove the key (an empty check would check nothing)";

/// A string-to-string mapping that refuses a key given twice (serde's maps keep the last one silently).
fn unique_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    struct UniqueMap(PhantomData<()>);
    impl<'de> Visitor<'de> for UniqueMap {
        type Value = BTreeMap<String, String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a mapping of names to strings")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = BTreeMap::new();
            while let Some(key) = map.next_key::<String>()? {
                let value: String = map.next_value()?;
                if out.contains_key(&key) {
                    return Err(de::Error::custom(format!("duplicate key `{key}`")));
                }
                out.insert(key, value);
            }
            Ok(out)
        }
    }
    d.deserialize_map(UniqueMap(PhantomData))
}

/// A wave is a number or a name; either way it is compared as text.
fn wave<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    fn parse(text: &str) -> Result<String, String> {
        Ok(text.trim().to_string())
    }
    d.deserialize_str(StrVisitor {
        expecting: "a wave number or name",
        parse,
    })
    .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_arns() {
        let p = ArnPattern::parse("arn:aws:sts::1:assumed-role/ReleaseManager/*").unwrap();
        assert!(p.matches("arn:aws:sts::1:assumed-role/ReleaseManager/alice"));
        assert!(!p.matches("arn:aws:sts::1:assumed-role/Developer/alice"));
        let p = ArnPattern::parse("arn:aws:iam::1:role/Release*Manager*").unwrap();
        assert!(p.matches("arn:aws:iam::1:role/ReleaseXManager"));
        assert!(p.matches("arn:aws:iam::1:role/Release-Manager-2"));
        assert!(!p.matches("arn:aws:iam::1:role/Releaser"));
    }

    #[test]
    fn permission_sets_match_their_own_sessions_only() {
        let m = GroupMember::parse("sso:111122223333:ReleaseManager").unwrap();
        assert!(
            m.matches("arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_ReleaseManager_0123456789abcdef/alice")
        );
        for other in [
            "arn:aws:sts::444455556666:assumed-role/AWSReservedSSO_ReleaseManager_0123456789abcdef/alice",
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_ReleaseManager_Extra_0123456789abcdef/alice",
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_ReleaseManager_0123456789abcdef/",
            "arn:aws:sts::111122223333:assumed-role/ReleaseManager/alice",
            "arn:aws:iam::111122223333:role/AWSReservedSSO_ReleaseManager_0123456789abcdef",
            "arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_ReleaseManager_xyz/alice",
        ] {
            assert!(!m.matches(other), "{other}");
        }
        let m = GroupMember::parse("sso:111122223333:Release_Manager").unwrap();
        assert!(m.matches("arn:aws:sts::111122223333:assumed-role/AWSReservedSSO_Release_Manager_00ff/bob"));
        for bad in [
            "sso:1111:ReleaseManager",
            "sso:111122223333:",
            "sso:111122223333:Release Manager",
            "sso:x",
        ] {
            assert!(GroupMember::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(m.to_string(), "sso:111122223333:Release_Manager");
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("europe/berln", "europe/berlin"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }
}
