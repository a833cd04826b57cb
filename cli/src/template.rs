//! Reads the deployable template, so the local run provisions exactly what production gets: the same EventBridge
//! patterns and the same table definition, never a copy that can drift.

use std::path::Path;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read template {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("template {path} is not valid YAML: {source}")]
    Yaml {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("template {path}: {problem}")]
    Shape { path: String, problem: String },
}

/// An `AWS::Events::Rule` of the template.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSpec {
    pub logical_id: String,
    /// True when the rule sits on the template's own bus (`EventBusName` set), false for the default bus.
    pub on_custom_bus: bool,
    pub pattern: Value,
    /// The `Id`s of its targets: `IngestQueue` (hub) or `ControlPlaneEventBus` (member account) for delivery rules.
    pub target_ids: Vec<String>,
}

impl RuleSpec {
    /// A delivery rule feeds the ingest queue, directly or through the control-plane bus. Other rules (the guard's
    /// alarm rule) have their own patterns and queues, and local tooling leaves them alone.
    pub fn is_delivery(&self) -> bool {
        self.target_ids
            .iter()
            .any(|id| id == "IngestQueue" || id == "ControlPlaneEventBus")
    }
}

/// A global secondary index of the table.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexSpec {
    pub name: String,
    pub key_schema: Vec<(String, String)>,
    pub projection_type: String,
    pub non_key_attributes: Vec<String>,
}

/// The `AWS::DynamoDB::Table` of the template, as plain JSON of its properties.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    pub attribute_definitions: Vec<(String, String)>,
    pub key_schema: Vec<(String, String)>,
    pub global_secondary_indexes: Vec<IndexSpec>,
    pub ttl_attribute: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub rules: Vec<RuleSpec>,
    pub table: Option<TableSpec>,
}

impl Template {
    pub fn load(path: &Path) -> Result<Template, TemplateError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::parse(&shown, &text)
    }

    pub fn parse(path: &str, text: &str) -> Result<Template, TemplateError> {
        let doc: serde_yaml::Value = serde_yaml::from_str(text).map_err(|source| TemplateError::Yaml {
            path: path.to_string(),
            source,
        })?;
        let shape = |problem: String| TemplateError::Shape {
            path: path.to_string(),
            problem,
        };
        let resources = doc
            .get("Resources")
            .and_then(|r| r.as_mapping())
            .ok_or_else(|| shape("no Resources section".into()))?;
        let mut rules = Vec::new();
        let mut table = None;
        for (id, resource) in resources {
            let id = id.as_str().unwrap_or_default().to_string();
            let props = resource.get("Properties");
            match resource.get("Type").and_then(|t| t.as_str()) {
                Some("AWS::Events::Rule") => {
                    let Some(pattern) = props.and_then(|p| p.get("EventPattern")) else {
                        continue;
                    };
                    let pattern = plain_json(pattern)
                        .map_err(|p| shape(format!("{id}.Properties.EventPattern must be plain YAML: {p}")))?;
                    let target_ids = props
                        .and_then(|p| p.get("Targets"))
                        .and_then(|t| t.as_sequence())
                        .into_iter()
                        .flatten()
                        .filter_map(|t| t.get("Id").and_then(|i| i.as_str()).map(str::to_string))
                        .collect();
                    rules.push(RuleSpec {
                        target_ids,
                        on_custom_bus: props.and_then(|p| p.get("EventBusName")).is_some(),
                        logical_id: id,
                        pattern,
                    });
                }
                Some("AWS::DynamoDB::Table") => {
                    let props = props.ok_or_else(|| shape(format!("{id} has no Properties")))?;
                    let json = |name: &str| -> Result<Value, TemplateError> {
                        props
                            .get(name)
                            .map(plain_json)
                            .transpose()
                            .map_err(|p| shape(format!("{id}.Properties.{name} must be plain YAML: {p}")))
                            .map(|v| v.unwrap_or(Value::Null))
                    };
                    let pairs = |v: &Value, a: &str, b: &str| -> Vec<(String, String)> {
                        v.as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|x| Some((x[a].as_str()?.to_string(), x[b].as_str()?.to_string())))
                            .collect()
                    };
                    let gsis = json("GlobalSecondaryIndexes")?;
                    table = Some(TableSpec {
                        attribute_definitions: pairs(&json("AttributeDefinitions")?, "AttributeName", "AttributeType"),
                        key_schema: pairs(&json("KeySchema")?, "AttributeName", "KeyType"),
                        global_secondary_indexes: gsis
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|g| {
                                Some(IndexSpec {
                                    name: g["IndexName"].as_str()?.to_string(),
                                    key_schema: pairs(&g["KeySchema"], "AttributeName", "KeyType"),
                                    projection_type: g["Projection"]["ProjectionType"]
                                        .as_str()
                                        .unwrap_or("ALL")
                                        .to_string(),
                                    non_key_attributes: g["Projection"]["NonKeyAttributes"]
                                        .as_array()
                                        .into_iter()
                                        .flatten()
                                        .filter_map(|a| a.as_str().map(str::to_string))
                                        .collect(),
                                })
                            })
                            .collect(),
                        ttl_attribute: json("TimeToLiveSpecification")?["AttributeName"]
                            .as_str()
                            .map(str::to_string),
                    });
                }
                _ => {}
            }
        }
        rules.sort_by(|a, b| a.logical_id.cmp(&b.logical_id));
        Ok(Template { rules, table })
    }
}

/// Converts YAML without CloudFormation tags (`!Ref`, `!Sub`...) to JSON.
fn plain_json(v: &serde_yaml::Value) -> Result<Value, String> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => serde_json::to_value(n).map_err(|e| e.to_string())?,
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(plain_json).collect::<Result<_, _>>()?),
        Y::Mapping(m) => {
            let mut out = serde_json::Map::new();
            for (k, v) in m {
                let k = k.as_str().ok_or_else(|| format!("non-string key {k:?}"))?;
                out.insert(k.to_string(), plain_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => return Err(format!("found the intrinsic function {}", t.tag)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn infra(name: &str) -> Template {
        Template::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../infra").join(name)).expect("template loads")
    }

    #[test]
    fn every_rule_in_every_template_has_the_same_pattern() {
        let hub = infra("template.yaml");
        let member = infra("member-account.yaml");
        let all: Vec<&RuleSpec> = hub
            .rules
            .iter()
            .chain(member.rules.iter())
            .filter(|r| r.is_delivery())
            .collect();
        assert!(all.len() >= 3, "{all:?}");
        for rule in &all {
            assert_eq!(
                rule.pattern, all[0].pattern,
                "{} differs from {}",
                rule.logical_id, all[0].logical_id
            );
        }
        assert!(hub.rules.iter().any(|r| r.on_custom_bus) && hub.rules.iter().any(|r| !r.on_custom_bus));
    }

    #[test]
    fn only_rules_feeding_the_ingest_queue_are_delivery_rules() {
        let hub = infra("template.yaml");
        let guard = hub
            .rules
            .iter()
            .find(|r| r.logical_id == "GuardAlarmsRule")
            .expect("the guard's rule");
        assert!(!guard.is_delivery(), "{guard:?}");
        assert_eq!(guard.target_ids, vec!["GuardQueue".to_string()]);
        assert_eq!(guard.pattern["source"], serde_json::json!(["aws.cloudwatch"]));
        let delivery: Vec<&str> = hub
            .rules
            .iter()
            .filter(|r| r.is_delivery())
            .map(|r| r.logical_id.as_str())
            .collect();
        assert_eq!(delivery, vec!["DeliveryEventsRule", "MemberDeliveryEventsRule"]);
    }

    #[test]
    fn the_pattern_admits_every_kind_tollgate_models() {
        let hub = infra("template.yaml");
        let types = hub.rules[0].pattern["detail-type"].as_array().unwrap();
        for kind in tollgate_domain::record::event::EventKind::ALL {
            if kind != tollgate_domain::record::event::EventKind::Unknown {
                assert!(
                    types.iter().any(|t| t == kind.detail_type()),
                    "{kind:?} is not routed by the rules"
                );
            }
        }
    }

    #[test]
    fn table_definition_is_read_from_the_template() {
        let table = infra("template.yaml").table.expect("a table");
        assert_eq!(
            table.key_schema,
            vec![("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())]
        );
        let names: Vec<&str> = table.global_secondary_indexes.iter().map(|g| g.name.as_str()).collect();
        assert_eq!(names, vec!["gsi1", "gsi2"]);
        // The execution summaries are read from gsi1 alone.
        assert!(table.global_secondary_indexes[0]
            .non_key_attributes
            .contains(&"pstates".to_string()));
        assert_eq!(table.ttl_attribute.as_deref(), Some("ttl"));
    }

    #[test]
    fn intrinsic_in_a_pattern_is_refused_with_its_place() {
        let text = "Resources:\n  R:\n    Type: AWS::Events::Rule\n    Properties:\n      EventPattern:\n        source: !Ref X\n";
        let err = Template::parse("t.yaml", text).unwrap_err().to_string();
        assert!(
            err.contains("R.Properties.EventPattern") && err.contains("!Ref"),
            "{err}"
        );
    }
}
