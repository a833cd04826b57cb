//! The template's IAM, re-read: every statement that lets a role write the table is limited by `dynamodb:LeadingKeys`
//! to that role's own key prefixes, and only the decide and approval functions may write decision items; the people
//! who decide get the decide URL and nothing of the table.

use serde_yaml::Value;

const WRITES: [&str; 5] = [
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:TransactWriteItems",
];
const DECISIONS: [&str; 4] = ["APPROVAL#", "OVERRIDE#", "FREEZE#", "IDENTITY#"];

fn list(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Sequence(items)) => items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect(),
        _ => Vec::new(),
    }
}

/// (resource, statement) of every Allow statement of every role and managed policy.
fn statements(doc: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (id, resource) in doc["Resources"].as_mapping().unwrap() {
        let id = id.as_str().unwrap().to_string();
        let props = &resource["Properties"];
        let documents: Vec<&Value> = match resource["Type"].as_str() {
            Some("AWS::IAM::Role") => props["Policies"]
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|p| &p["PolicyDocument"])
                .collect(),
            Some("AWS::IAM::ManagedPolicy") => vec![&props["PolicyDocument"]],
            _ => continue,
        };
        for d in documents {
            for s in d["Statement"].as_sequence().into_iter().flatten() {
                if s["Effect"].as_str() == Some("Allow") {
                    out.push((id.clone(), s.clone()));
                }
            }
        }
    }
    out
}

#[test]
fn every_table_write_is_limited_to_the_roles_own_prefixes_and_decisions_to_decide_and_approval() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml")).unwrap();
    let doc: Value = serde_yaml::from_str(&text).unwrap();
    let mut writers = Vec::new();
    for (id, s) in statements(&doc) {
        let actions = list(s.get("Action"));
        let writes = actions
            .iter()
            .any(|a| WRITES.contains(&a.as_str()) || a == "dynamodb:*" || a == "*");
        if !writes {
            continue;
        }
        let prefixes = list(
            s.get("Condition")
                .and_then(|c| c.get("ForAllValues:StringLike"))
                .and_then(|c| c.get("dynamodb:LeadingKeys")),
        );
        assert!(
            !prefixes.is_empty(),
            "{id}: a table write without a dynamodb:LeadingKeys condition: {s:?}"
        );
        assert!(prefixes.iter().all(|p| p.ends_with("#*")), "{id}: {prefixes:?}");
        for p in &prefixes {
            if DECISIONS.iter().any(|d| p.starts_with(d)) {
                assert!(
                    ["DecideFunctionRole", "ApprovalFunctionRole"].contains(&id.as_str()),
                    "{id} may write decision items ({p})"
                );
            }
        }
        writers.push((id, prefixes));
    }
    let decide: Vec<&String> = writers
        .iter()
        .filter(|(id, _)| id == "DecideFunctionRole")
        .flat_map(|(_, p)| p)
        .collect();
    for d in DECISIONS {
        assert!(
            decide.iter().any(|p| p.starts_with(d)),
            "the decide function cannot write {d}"
        );
    }
    let gate: Vec<&String> = writers
        .iter()
        .filter(|(id, _)| id == "GateFunctionRole")
        .flat_map(|(_, p)| p)
        .collect();
    assert!(
        gate.iter().any(|p| *p == "EFFECTIVE#*"),
        "the gate must record effective policies: {gate:?}"
    );
    for role in ["IngestFunctionRole", "GuardFunctionRole"] {
        assert!(
            writers.iter().any(|(id, _)| id == role),
            "{role} writes the table under a condition"
        );
    }
    // People get the decide URL only.
    let invoke: Vec<Value> = statements(&doc)
        .into_iter()
        .filter(|(id, _)| id == "DecideInvokePolicy")
        .map(|(_, s)| s)
        .collect();
    let actions: Vec<String> = invoke.iter().flat_map(|s| list(s.get("Action"))).collect();
    assert_eq!(actions, ["lambda:InvokeFunctionUrl", "lambda:InvokeFunction"]);
    let url = &doc["Resources"]["DecideFunction"]["Properties"]["FunctionUrlConfig"]["AuthType"];
    assert_eq!(url.as_str(), Some("AWS_IAM"));
}
