//! CloudWatch for the gate: [`CloudWatchAlarms`] reads alarm states (DescribeAlarms) and [`CloudWatchMetrics`]
//! totals a metric over a bake (GetMetricData).
//!
//! Every failure is returned as a [`FactError`] that says what was asked and why it failed: the policy decides
//! whether the gate fails closed or open on it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use aws_sdk_cloudwatch::error::{DisplayErrorContext, SdkError};
use aws_sdk_cloudwatch::types::{AlarmType, Dimension, Metric, MetricDataQuery, MetricStat, StateValue, StatusCode};
use aws_sdk_cloudwatch::Client;
use chrono::{DateTime, Utc};
use tollgate_domain::gate::policy::{AlarmFact, AlarmState, MinRequests};
use tollgate_domain::gate::{AlarmStates, FactError, MetricTotals};

/// DescribeAlarms takes at most 100 names per request.
const NAMES_PER_REQUEST: usize = 100;
/// GetMetricData periods: whole minutes, at most this many datapoints for the whole bake.
const MAX_DATAPOINTS: i64 = 1440;

fn failed<E>(what: &str, err: &SdkError<E>) -> FactError
where
    E: std::error::Error + 'static,
{
    FactError(format!("CloudWatch {what} failed: {}", DisplayErrorContext(err)))
}

fn to_chrono(t: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn to_smithy(t: DateTime<Utc>) -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from_secs(t.timestamp())
}

/// Alarm states over DescribeAlarms (metric and composite alarms), in the client's region.
#[derive(Debug, Clone)]
pub struct CloudWatchAlarms {
    client: Client,
}

impl CloudWatchAlarms {
    pub fn new(client: Client) -> Self {
        CloudWatchAlarms { client }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk))
    }
}

/// One alarm's fact. `StateTransitionedTimestamp` (when `StateValue` last changed) when CloudWatch gives it, else
/// `StateUpdatedTimestamp`, which also moves when only the reason changes, so it can only make a wait look shorter
/// to the gate, never an alarm look quieter for longer than it was.
fn fact(
    name: Option<&str>,
    state: Option<&StateValue>,
    transitioned: Option<&aws_smithy_types::DateTime>,
    updated: Option<&aws_smithy_types::DateTime>,
) -> Result<AlarmFact, FactError> {
    let name = name.ok_or_else(|| FactError("CloudWatch DescribeAlarms returned an alarm without a name".into()))?;
    let state = match state {
        Some(StateValue::Ok) => AlarmState::Ok,
        Some(StateValue::Alarm) => AlarmState::Alarm,
        Some(StateValue::InsufficientData) => AlarmState::InsufficientData,
        other => {
            return Err(FactError(format!(
                "alarm {name} has an unknown state {:?}",
                other.map(|s| s.as_str())
            )))
        }
    };
    let since = transitioned
        .or(updated)
        .and_then(to_chrono)
        .ok_or_else(|| FactError(format!("alarm {name} has no state timestamp")))?;
    Ok(AlarmFact {
        name: name.to_string(),
        state,
        since,
    })
}

#[async_trait]
impl AlarmStates for CloudWatchAlarms {
    #[tracing::instrument(skip_all, fields(alarms = names.len()))]
    async fn alarm_states(
        &self,
        names: &[String],
        tags: &BTreeMap<String, String>,
    ) -> Result<Vec<AlarmFact>, FactError> {
        if !tags.is_empty() {
            // Tags are resolved to names by the tagging API (`TaggedAlarms` over `ResourceGroupsTaggingAlarms`);
            // this adapter reached with tags is wired wrong, and checking fewer alarms than asked is not an option.
            let tags: Vec<String> = tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            return Err(FactError(format!(
                "alarms tagged {} cannot be read by name: this gate is not wired to the tagging API \
                 (tollgate_domain::gate::TaggedAlarms)",
                tags.join(", ")
            )));
        }
        let mut facts = Vec::new();
        for chunk in names.chunks(NAMES_PER_REQUEST) {
            let mut next_token: Option<String> = None;
            loop {
                let out = self
                    .client
                    .describe_alarms()
                    .set_alarm_names(Some(chunk.to_vec()))
                    .alarm_types(AlarmType::MetricAlarm)
                    .alarm_types(AlarmType::CompositeAlarm)
                    .set_next_token(next_token.take())
                    .send()
                    .await
                    .map_err(|e| failed("DescribeAlarms", &e))?;
                for a in out.metric_alarms() {
                    facts.push(fact(
                        a.alarm_name(),
                        a.state_value(),
                        a.state_transitioned_timestamp(),
                        a.state_updated_timestamp(),
                    )?);
                }
                for a in out.composite_alarms() {
                    facts.push(fact(
                        a.alarm_name(),
                        a.state_value(),
                        a.state_transitioned_timestamp(),
                        a.state_updated_timestamp(),
                    )?);
                }
                match out.next_token() {
                    Some(t) if !t.is_empty() => next_token = Some(t.to_string()),
                    _ => break,
                }
            }
        }
        tracing::debug!(found = facts.len(), "alarm states read");
        Ok(facts)
    }
}

/// Metric totals over GetMetricData, in the client's region.
#[derive(Debug, Clone)]
pub struct CloudWatchMetrics {
    client: Client,
}

impl CloudWatchMetrics {
    pub fn new(client: Client) -> Self {
        CloudWatchMetrics { client }
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig) -> Self {
        Self::new(Client::new(sdk))
    }
}

/// The period of the query: whole minutes, so that the bake fits in [`MAX_DATAPOINTS`] datapoints.
pub(crate) fn period_secs(from: DateTime<Utc>, to: DateTime<Utc>) -> i32 {
    let minutes = ((to - from).num_seconds().max(60) + 59) / 60;
    let per_point = (minutes + MAX_DATAPOINTS - 1) / MAX_DATAPOINTS;
    i32::try_from(per_point * 60).unwrap_or(i32::MAX)
}

#[async_trait]
impl MetricTotals for CloudWatchMetrics {
    #[tracing::instrument(skip_all, fields(namespace = %metric.namespace, metric = %metric.metric))]
    async fn metric_total(
        &self,
        metric: &MinRequests,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<f64, FactError> {
        let dimensions: Vec<Dimension> = metric
            .dimensions
            .iter()
            .map(|(name, value)| Dimension::builder().name(name).value(value).build())
            .collect();
        let query = MetricDataQuery::builder()
            .id("bake")
            .metric_stat(
                MetricStat::builder()
                    .metric(
                        Metric::builder()
                            .namespace(&metric.namespace)
                            .metric_name(&metric.metric)
                            .set_dimensions(Some(dimensions))
                            .build(),
                    )
                    .period(period_secs(from, to))
                    .stat(metric.statistic.as_str())
                    .build(),
            )
            .return_data(true)
            .build();
        let mut total = 0.0;
        let mut next_token: Option<String> = None;
        loop {
            let out = self
                .client
                .get_metric_data()
                .metric_data_queries(query.clone())
                .start_time(to_smithy(from))
                .end_time(to_smithy(to))
                .set_next_token(next_token.take())
                .send()
                .await
                .map_err(|e| failed("GetMetricData", &e))?;
            for result in out.metric_data_results() {
                if matches!(
                    result.status_code(),
                    Some(StatusCode::Forbidden | StatusCode::InternalError)
                ) {
                    let messages: Vec<&str> = result.messages().iter().filter_map(|m| m.value()).collect();
                    return Err(FactError(format!(
                        "CloudWatch GetMetricData of {}/{}: {:?} {}",
                        metric.namespace,
                        metric.metric,
                        result.status_code().map(|s| s.as_str()),
                        messages.join("; ")
                    )));
                }
                total += result.values().iter().sum::<f64>();
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => next_token = Some(t.to_string()),
                _ => break,
            }
        }
        tracing::debug!(total, "metric totalled");
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_cloudwatch::operation::describe_alarms::{DescribeAlarmsError, DescribeAlarmsOutput};
    use aws_sdk_cloudwatch::operation::get_metric_data::GetMetricDataOutput;
    use aws_sdk_cloudwatch::types::{CompositeAlarm, MetricAlarm, MetricDataResult};
    use aws_smithy_mocks::{mock, mock_client, RuleMode};
    use aws_smithy_types::error::ErrorMetadata;
    use tollgate_domain::gate::policy::Statistic;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[tokio::test]
    async fn describe_alarms_asks_for_the_names_and_both_alarm_types() {
        let rule = mock!(Client::describe_alarms)
            .match_requests(|r| {
                r.alarm_names() == ["checkout-service-5xx", "checkout-service-latency-p99"]
                    && r.alarm_types() == [AlarmType::MetricAlarm, AlarmType::CompositeAlarm]
                    && r.next_token().is_none()
            })
            .then_output(|| {
                DescribeAlarmsOutput::builder()
                    .metric_alarms(
                        MetricAlarm::builder()
                            .alarm_name("checkout-service-5xx")
                            .state_value(StateValue::Alarm)
                            .state_updated_timestamp(aws_smithy_types::DateTime::from_secs(1_795_183_900))
                            .state_transitioned_timestamp(aws_smithy_types::DateTime::from_secs(1_795_183_800))
                            .build(),
                    )
                    .composite_alarms(
                        CompositeAlarm::builder()
                            .alarm_name("checkout-service-latency-p99")
                            .state_value(StateValue::InsufficientData)
                            .state_updated_timestamp(aws_smithy_types::DateTime::from_secs(1_795_180_000))
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::Sequential, [&rule]);
        let names = vec![
            "checkout-service-5xx".to_string(),
            "checkout-service-latency-p99".to_string(),
        ];
        let facts = CloudWatchAlarms::new(client)
            .alarm_states(&names, &BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(
            facts,
            vec![
                AlarmFact {
                    name: "checkout-service-5xx".into(),
                    state: AlarmState::Alarm,
                    since: at("2026-11-20T14:10:00Z"),
                },
                AlarmFact {
                    name: "checkout-service-latency-p99".into(),
                    state: AlarmState::InsufficientData,
                    since: DateTime::from_timestamp(1_795_180_000, 0).unwrap(),
                },
            ]
        );
        assert_eq!(rule.num_calls(), 1);
    }

    #[tokio::test]
    async fn describe_alarms_error_names_the_operation_and_the_code() {
        let rule = mock!(Client::describe_alarms).then_error(|| {
            DescribeAlarmsError::generic(
                ErrorMetadata::builder()
                    .code("AccessDenied")
                    .message("not authorized to perform cloudwatch:DescribeAlarms")
                    .build(),
            )
        });
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::Sequential, [&rule]);
        let err = CloudWatchAlarms::new(client)
            .alarm_states(&["a".to_string()], &BTreeMap::new())
            .await
            .unwrap_err();
        assert!(
            err.0.contains("DescribeAlarms") && err.0.contains("AccessDenied"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn tags_are_refused_with_a_reason_rather_than_ignored() {
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::Sequential, []);
        let tags = BTreeMap::from([("service".to_string(), "checkout".to_string())]);
        let err = CloudWatchAlarms::new(client)
            .alarm_states(&[], &tags)
            .await
            .unwrap_err();
        assert!(err.0.contains("service=checkout"), "{err}");
    }

    #[tokio::test]
    async fn describe_alarms_asks_for_at_most_100_names_per_request() {
        let names: Vec<String> = (0..250).map(|i| format!("alarm-{i:03}")).collect();
        let chunk = |from: usize, to: usize| {
            let expected: Vec<String> = names[from..to].to_vec();
            mock!(Client::describe_alarms)
                .match_requests(move |r| r.alarm_names() == expected.as_slice() && r.next_token().is_none())
                .then_output(move || {
                    let mut out = DescribeAlarmsOutput::builder();
                    for i in from..to {
                        out = out.metric_alarms(
                            MetricAlarm::builder()
                                .alarm_name(format!("alarm-{i:03}"))
                                .state_value(StateValue::Ok)
                                .state_updated_timestamp(aws_smithy_types::DateTime::from_secs(1_795_180_000))
                                .build(),
                        );
                    }
                    out.build()
                })
        };
        let (a, b, c) = (chunk(0, 100), chunk(100, 200), chunk(200, 250));
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::Sequential, [&a, &b, &c]);
        let facts = CloudWatchAlarms::new(client)
            .alarm_states(&names, &BTreeMap::new())
            .await
            .unwrap();
        assert_eq!(facts.len(), 250);
        assert_eq!((a.num_calls(), b.num_calls(), c.num_calls()), (1, 1, 1));
    }

    #[tokio::test]
    async fn get_metric_data_totals_the_statistic_over_the_bake() {
        let (from, to) = (at("2026-11-20T12:00:00Z"), at("2026-11-20T14:00:00Z"));
        let rule = mock!(Client::get_metric_data)
            .match_requests(move |r| {
                let q = &r.metric_data_queries()[0];
                let stat = q.metric_stat().unwrap();
                let m = stat.metric().unwrap();
                r.start_time() == Some(&to_smithy(from))
                    && r.end_time() == Some(&to_smithy(to))
                    && m.namespace() == Some("AWS/ApplicationELB")
                    && m.metric_name() == Some("RequestCount")
                    && m.dimensions()[0].name() == Some("LoadBalancer")
                    && m.dimensions()[0].value() == Some("app/checkout/123")
                    && stat.stat() == Some("Sum")
                    && stat.period() == Some(60)
            })
            .then_output(|| {
                GetMetricDataOutput::builder()
                    .metric_data_results(
                        MetricDataResult::builder()
                            .id("bake")
                            .values(400.0)
                            .values(250.5)
                            .status_code(StatusCode::Complete)
                            .build(),
                    )
                    .build()
            });
        let client = mock_client!(aws_sdk_cloudwatch, RuleMode::Sequential, [&rule]);
        let metric = MinRequests {
            namespace: "AWS/ApplicationELB".into(),
            metric: "RequestCount".into(),
            dimensions: BTreeMap::from([("LoadBalancer".to_string(), "app/checkout/123".to_string())]),
            statistic: Statistic::Sum,
            at_least: 1000.0,
        };
        let total = CloudWatchMetrics::new(client)
            .metric_total(&metric, from, to)
            .await
            .unwrap();
        assert_eq!(total, 650.5);
        assert_eq!(rule.num_calls(), 1);
    }

    #[test]
    fn periods_are_whole_minutes_within_the_datapoint_budget() {
        let from = at("2026-11-20T00:00:00Z");
        assert_eq!(period_secs(from, from + chrono::Duration::minutes(5)), 60);
        assert_eq!(period_secs(from, from + chrono::Duration::days(1)), 60);
        assert_eq!(period_secs(from, from + chrono::Duration::days(3)), 180);
    }
}
