//! Matching labels, node selector terms and tolerations, compiled once per pod.
//!
//! The scheduler evaluates the same selector against hundreds of nodes or pods per cycle, so
//! each is turned into a small list of requirements first. Malformed input (an unknown
//! operator, a non-integer `Gt` value) makes the requirement match nothing, as Kubernetes
//! ignores terms it cannot parse rather than failing the pod.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One requirement on a label map.
#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
    Gt(String, i64),
    Lt(String, i64),
    /// Could not be parsed: matches nothing.
    Never,
}

impl Requirement {
    fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |key: &str| labels.and_then(|l| l.get(key));
        match self {
            Requirement::In(key, values) => get(key).is_some_and(|v| values.iter().any(|x| x == v)),
            Requirement::NotIn(key, values) => get(key).is_none_or(|v| !values.iter().any(|x| x == v)),
            Requirement::Exists(key) => get(key).is_some(),
            Requirement::DoesNotExist(key) => get(key).is_none(),
            Requirement::Gt(key, bound) => get(key).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v > *bound),
            Requirement::Lt(key, bound) => get(key).and_then(|v| v.parse::<i64>().ok()).is_some_and(|v| v < *bound),
            Requirement::Never => false,
        }
    }

    fn parse(key: &str, operator: &str, values: &[String], numeric: bool) -> Requirement {
        let key = key.to_string();
        match operator {
            "In" if !values.is_empty() => Requirement::In(key, values.to_vec()),
            "NotIn" if !values.is_empty() => Requirement::NotIn(key, values.to_vec()),
            "Exists" if values.is_empty() => Requirement::Exists(key),
            "DoesNotExist" if values.is_empty() => Requirement::DoesNotExist(key),
            "Gt" | "Lt" if numeric && values.len() == 1 => match values[0].parse::<i64>() {
                Ok(bound) if operator == "Gt" => Requirement::Gt(key, bound),
                Ok(bound) => Requirement::Lt(key, bound),
                Err(_) => Requirement::Never,
            },
            _ => Requirement::Never,
        }
    }
}

/// A compiled `metav1.LabelSelector` (or a Service's map selector).
///
/// `None` from [`Selector::from_label_selector`] is Kubernetes' `labels.Nothing()`; a selector
/// with no requirements is `labels.Everything()`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Compiles a label selector; `None` (a nil selector) selects nothing.
    pub fn from_label_selector(selector: Option<&LabelSelector>) -> Option<Selector> {
        let selector = selector?;
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(key.clone(), vec![value.clone()]));
        }
        for expression in selector.match_expressions.iter().flatten() {
            let values = expression.values.as_deref().unwrap_or(&[]);
            requirements.push(Requirement::parse(&expression.key, &expression.operator, values, false));
        }
        Some(Selector { requirements })
    }

    /// A selector requiring exactly these labels (a Service's or ReplicationController's).
    pub fn from_map(labels: &BTreeMap<String, String>) -> Selector {
        Selector { requirements: labels.iter().map(|(k, v)| Requirement::In(k.clone(), vec![v.clone()])).collect() }
    }

    /// Adds `key In (value)`.
    pub fn require_label(&mut self, key: &str, value: &str) {
        self.requirements.push(Requirement::In(key.to_string(), vec![value.to_string()]));
    }

    /// Adds every requirement of `other`.
    pub fn extend(&mut self, other: &Selector) {
        self.requirements.extend(other.requirements.iter().cloned());
    }

    /// True for a selector with no requirements (Everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }
}

/// One compiled `NodeSelectorTerm`: label expressions and `metadata.name` field expressions,
/// all of which must hold. A term with neither matches no node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeTerm {
    labels: Vec<Requirement>,
    /// Requirements on the node's name (`matchFields` supports only `metadata.name`).
    fields: Vec<Requirement>,
}

impl NodeTerm {
    pub fn compile(term: &NodeSelectorTerm) -> NodeTerm {
        let compile = |r: &NodeSelectorRequirement, numeric: bool| {
            Requirement::parse(&r.key, &r.operator, r.values.as_deref().unwrap_or(&[]), numeric)
        };
        let labels = term.match_expressions.iter().flatten().map(|r| compile(r, true)).collect();
        let fields = term
            .match_fields
            .iter()
            .flatten()
            .map(|r| match (r.key.as_str(), r.operator.as_str()) {
                ("metadata.name", "In" | "NotIn") => compile(r, false),
                _ => Requirement::Never,
            })
            .collect();
        NodeTerm { labels, fields }
    }

    pub fn matches(&self, node_name: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return false;
        }
        if !self.labels.iter().all(|r| r.matches(labels)) {
            return false;
        }
        if self.fields.is_empty() {
            return true;
        }
        let name = BTreeMap::from([("metadata.name".to_string(), node_name.to_string())]);
        self.fields.iter().all(|r| r.matches(Some(&name)))
    }
}

/// The pod's hard node constraints: every `spec.nodeSelector` label and, when set, at least
/// one required node-affinity term.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequiredNodeAffinity {
    node_selector: Vec<(String, String)>,
    /// `None`: no required affinity. `Some(empty)`: a required affinity with no terms, which
    /// matches nothing.
    terms: Option<Vec<NodeTerm>>,
}

impl RequiredNodeAffinity {
    pub fn of(spec: &k8s_openapi::api::core::v1::PodSpec) -> RequiredNodeAffinity {
        let node_selector = spec.node_selector.iter().flatten().map(|(k, v)| (k.clone(), v.clone())).collect();
        let terms = spec
            .affinity
            .as_ref()
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|n| n.required_during_scheduling_ignored_during_execution.as_ref())
            .map(|required| required.node_selector_terms.iter().map(NodeTerm::compile).collect());
        RequiredNodeAffinity { node_selector, terms }
    }

    /// True when the pod constrains nothing.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_empty() && self.terms.is_none()
    }

    pub fn matches(&self, node_name: &str, labels: Option<&BTreeMap<String, String>>) -> bool {
        let selector_ok = self.node_selector.iter().all(|(k, v)| labels.and_then(|l| l.get(k)).is_some_and(|x| x == v));
        selector_ok && self.terms.as_ref().is_none_or(|terms| terms.iter().any(|t| t.matches(node_name, labels)))
    }
}

/// Whether `toleration` tolerates `taint` (Kubernetes' `ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        _ => false,
    }
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn first_untolerated<'a>(taints: &'a [Taint], tolerations: &[Toleration], effects: &[&str]) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effects.contains(&t.effect.as_str()))
        .find(|t| !tolerations.iter().any(|tol| tolerates(tol, t)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn req(key: &str, op: &str, values: &[&str]) -> NodeSelectorRequirement {
        NodeSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        }
    }

    #[test]
    fn scheduler_node_terms_apply_every_operator() {
        let l = labels(&[("zone", "a"), ("cores", "8")]);
        let term = |reqs: Vec<NodeSelectorRequirement>| {
            NodeTerm::compile(&NodeSelectorTerm { match_expressions: Some(reqs), match_fields: None })
        };
        assert!(term(vec![req("zone", "In", &["a", "b"])]).matches("n", Some(&l)));
        assert!(!term(vec![req("zone", "NotIn", &["a"])]).matches("n", Some(&l)));
        assert!(term(vec![req("gpu", "NotIn", &["x"])]).matches("n", Some(&l)), "NotIn holds for a missing key");
        assert!(term(vec![req("zone", "Exists", &[])]).matches("n", Some(&l)));
        assert!(term(vec![req("gpu", "DoesNotExist", &[])]).matches("n", Some(&l)));
        assert!(term(vec![req("cores", "Gt", &["4"])]).matches("n", Some(&l)));
        assert!(!term(vec![req("cores", "Lt", &["8"])]).matches("n", Some(&l)));
        assert!(!term(vec![req("zone", "Gt", &["1"])]).matches("n", Some(&l)), "non-integer label");
        assert!(!term(vec![req("zone", "Bogus", &["a"])]).matches("n", Some(&l)));
        assert!(!term(vec![]).matches("n", Some(&l)), "an empty term matches nothing");
        let by_name = NodeTerm::compile(&NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![req("metadata.name", "In", &["n1"])]),
        });
        assert!(by_name.matches("n1", None));
        assert!(!by_name.matches("n2", None));
    }

    #[test]
    fn scheduler_tolerations_match_like_kubernetes() {
        let taint = Taint { key: "k".into(), value: Some("v".into()), effect: "NoSchedule".into(), time_added: None };
        let tol = |key: &str, op: &str, value: &str, effect: &str| Toleration {
            key: (!key.is_empty()).then(|| key.to_string()),
            operator: Some(op.to_string()),
            value: (!value.is_empty()).then(|| value.to_string()),
            effect: (!effect.is_empty()).then(|| effect.to_string()),
            toleration_seconds: None,
        };
        assert!(tolerates(&tol("k", "Equal", "v", "NoSchedule"), &taint));
        assert!(tolerates(&tol("k", "Equal", "v", ""), &taint), "empty effect matches all effects");
        assert!(!tolerates(&tol("k", "Equal", "w", ""), &taint));
        assert!(tolerates(&tol("k", "Exists", "", ""), &taint));
        assert!(tolerates(&tol("", "Exists", "", ""), &taint), "empty key with Exists tolerates everything");
        assert!(!tolerates(&tol("k", "Exists", "", "NoExecute"), &taint));
    }

    #[test]
    fn scheduler_label_selectors_nil_matches_nothing_empty_everything() {
        assert!(Selector::from_label_selector(None).is_none());
        let everything = Selector::from_label_selector(Some(&LabelSelector::default())).unwrap_or_default();
        assert!(everything.is_empty() && everything.matches(None));
        let app = Selector::from_map(&labels(&[("app", "web")]));
        assert!(app.matches(Some(&labels(&[("app", "web"), ("x", "y")]))));
        assert!(!app.matches(Some(&labels(&[("app", "db")]))));
    }
}
