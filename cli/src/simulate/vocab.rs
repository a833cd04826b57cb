//! Seeded randomness, AWS's time formats and the vocabulary of the simulated pipelines.

use super::*;

// ---------------------------------------------------------------------------------------------------------------
// Randomness helpers over the splitmix64 generator.

/// The seed of an independent sequence: one per (`salt`, `index`) for a given `seed`. splitmix64's output function is
/// a bijection, so distinct indices give distinct, unrelated-looking seeds.
pub(super) fn derive_seed(seed: u64, salt: u64, index: u64) -> u64 {
    let base = Rng::new(seed ^ salt).next_u64();
    Rng::new(base ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03)).next_u64()
}

pub(super) fn below(rng: &mut Rng, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    (rng.next_u64() % n as u64) as usize
}

/// Uniform in `lo..=hi`.
pub(super) fn between(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    if hi <= lo {
        return lo;
    }
    lo + (rng.next_u64() % (hi - lo + 1) as u64) as i64
}

pub(super) fn secs(rng: &mut Rng, lo: i64, hi: i64) -> Duration {
    Duration::seconds(between(rng, lo, hi))
}

/// True with probability `p` (never for `p <= 0`, always for `p >= 1`); always draws once.
pub(super) fn chance(rng: &mut Rng, p: f64) -> bool {
    rng.unit() < p
}

pub(super) fn pick<'a>(rng: &mut Rng, items: &[&'a str]) -> &'a str {
    items[below(rng, items.len())]
}

pub(super) fn chars_from(rng: &mut Rng, alphabet: &[u8], n: usize) -> String {
    (0..n).map(|_| alphabet[below(rng, alphabet.len())] as char).collect()
}

pub(super) fn hex(rng: &mut Rng, n: usize) -> String {
    chars_from(rng, b"0123456789abcdef", n)
}

pub(super) fn digits(rng: &mut Rng, n: usize) -> String {
    chars_from(rng, b"0123456789", n)
}

/// A random (version 4 shaped) UUID.
pub(super) fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        ((b >> 48) & 0x3fff) | 0x8000,
        b & 0xffff_ffff_ffff
    )
}

/// A CodeDeploy deployment id: `d-` and 9 upper-case letters or digits.
pub(super) fn deployment_id(rng: &mut Rng) -> String {
    format!("d-{}", chars_from(rng, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 9))
}

/// The random part of a CodePipeline artifact key (`keJqSYC`).
pub(super) fn artifact_suffix(rng: &mut Rng) -> String {
    chars_from(
        rng,
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        7,
    )
}

// ---------------------------------------------------------------------------------------------------------------
// Time formats.

// Written by hand rather than with `DateTime::format`, which parses its format string on every call: generating
// events is mostly formatting times.

pub(super) const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// EventBridge `time`: RFC 3339, seconds, `Z`.
pub(super) fn event_time(t: DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// CodeBuild's `"Nov 20, 2026 9:12:29 AM"` (UTC, 12-hour clock, no leading zeros).
pub(super) fn codebuild_time(t: DateTime<Utc>) -> String {
    let (pm, hour) = t.hour12();
    format!(
        "{} {}, {} {hour}:{:02}:{:02} {}",
        MONTHS[t.month0() as usize],
        t.day(),
        t.year(),
        t.minute(),
        t.second(),
        if pm { "PM" } else { "AM" }
    )
}

/// CloudWatch's `"2026-11-20T09:23:51.514+0000"`.
pub(super) fn cloudwatch_time(t: DateTime<Utc>) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        t.month(),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.timestamp_subsec_millis()
    )
}

// ---------------------------------------------------------------------------------------------------------------
// What the pipelines are made of.

pub(super) const PIPELINE_NAMES: [&str; 30] = [
    "checkout-service",
    "payments-api",
    "orders-service",
    "inventory-service",
    "catalog-api",
    "search-service",
    "user-profile-api",
    "auth-service",
    "notifications-worker",
    "shipping-service",
    "pricing-engine",
    "recommendations-api",
    "cart-service",
    "billing-service",
    "invoice-generator",
    "fraud-detection",
    "reviews-api",
    "loyalty-service",
    "edge-gateway",
    "media-uploader",
    "reporting-etl",
    "analytics-ingest",
    "email-sender",
    "tax-calculator",
    "returns-service",
    "warehouse-sync",
    "customer-support-api",
    "feature-flags",
    "session-store",
    "webhooks-dispatcher",
];

pub(super) const GITHUB_ORGS: [&str; 3] = ["example-shop", "example-shop-platform", "example-shop-payments"];

pub(super) const COMMIT_MESSAGES: [&str; 32] = [
    "Add express checkout",
    "Fix null basket in express checkout",
    "Retry payment provider timeouts with backoff",
    "Bump aws-sdk to the latest minor version",
    "Add index on orders.created_at",
    "Cache catalog lookups for 60 seconds",
    "Log request ids on every error",
    "Remove the legacy v1 endpoints",
    "Validate postcode before quoting shipping",
    "Handle empty search queries",
    "Raise connection pool size to 50",
    "Add feature flag for new pricing rules",
    "Fix rounding of tax on discounted items",
    "Paginate the order history endpoint",
    "Upgrade Node.js runtime to 22",
    "Add health check for the payments dependency",
    "Fix race in inventory reservation",
    "Translate error messages to German and French",
    "Return 429 instead of 500 when throttled",
    "Add metrics for cart abandonment",
    "Refactor the webhook signature check",
    "Tighten IAM policy of the worker role",
    "Drop unused columns from the sessions table",
    "Fix timezone of scheduled reports",
    "Add circuit breaker around the fraud service",
    "Stream large exports instead of buffering",
    "Fix flaky integration test for refunds",
    "Make email templates responsive",
    "Increase Lambda memory for image resizing",
    "Add idempotency keys to payment captures",
    "Update dependencies (weekly)",
    "Revert \"Cache catalog lookups for 60 seconds\"",
];

pub(super) const BUILD_COMMANDS: [&str; 5] = [
    "npm run build",
    "./gradlew build",
    "make build",
    "cargo build --release",
    "mvn -B package",
];

pub(super) const TEST_COMMANDS: [&str; 5] = [
    "npm test",
    "./gradlew test",
    "make test",
    "cargo test --workspace",
    "pytest -q",
];

pub(super) const APPROVAL_COMMENTS: [&str; 5] = [
    "Staging checks passed",
    "Approved for release",
    "LGTM, release notes updated",
    "Approved after smoke test on staging",
    "Go for production",
];

pub(super) const BUILD_IMAGES: [&str; 3] = [
    "aws/codebuild/amazonlinux2-x86_64-standard:5.0",
    "aws/codebuild/standard:7.0",
    "aws/codebuild/amazonlinux2-aarch64-standard:3.0",
];

/// The CodePipeline action type of each kind of action: (owner, provider, category).
pub(super) const SOURCE: (&str, &str, &str) = ("AWS", "CodeStarSourceConnection", "Source");
pub(super) const CODEBUILD_BUILD: (&str, &str, &str) = ("AWS", "CodeBuild", "Build");
pub(super) const CODEBUILD_TEST: (&str, &str, &str) = ("AWS", "CodeBuild", "Test");
pub(super) const CODEDEPLOY: (&str, &str, &str) = ("AWS", "CodeDeploy", "Deploy");
pub(super) const MANUAL: (&str, &str, &str) = ("AWS", "Manual", "Approval");
