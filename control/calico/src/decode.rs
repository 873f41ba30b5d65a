//! YAML values into the resources of [`crate::model`], strictly as calicoctl decodes them
//! (`sigs.k8s.io/yaml` `UnmarshalStrict`: YAML to JSON, then Go's `encoding/json` with unknown
//! fields refused):
//!
//! * a field name matches exactly, else ignoring ASCII case (as `encoding/json` does); any
//!   other name is an unknown field;
//! * `null` leaves a field at its zero value (an absent pointer, an empty string or list);
//! * a string field takes any scalar, a number or boolean written as Go writes it (`1`,
//!   `1.5`, `true`): what the YAML-to-JSON step does for a string target;
//! * integer fields take integers (a float that is a whole number too: JSON has one number
//!   type), in the range of their Go type; `float64` fields any finite number;
//! * ports and protocols decode as `numorstring` does: `"80"`, `"80:90"` or a name of
//!   `[a-zA-Z0-9_.-]{1,128}` (a numeric string is a number, `"200:100"` an error); a protocol
//!   number or numeric string fits in a byte, other strings are kept as written.
//!
//! Every error is kept with its field path; a resource with any is not validated further
//! (calicoctl stops at the first).

use crate::locate::FieldPath;
use crate::model::{
    EndpointPort, EntityRule, Http, HttpPath, Icmp, Metadata, PolicyKind, PolicySpec, Port,
    Protocol, Rule, RuleMetadata, ServiceAccounts, ServiceMatch, TierSpec, WorkloadEndpointSpec,
};
use serde_norway::Value;
use std::collections::BTreeMap;

/// A decoding error: the field and what is wrong.
pub type DecodeError = (FieldPath, String);

/// The decoder's state: the errors so far.
#[derive(Default)]
pub struct Dec {
    pub errors: Vec<DecodeError>,
}

/// What a YAML value is, for messages.
fn what(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(t) => what(&t.value),
    }
}

/// The value under any `!tag`.
fn untag(v: &Value) -> &Value {
    match v {
        Value::Tagged(t) => untag(&t.value),
        other => other,
    }
}

/// A float as Go's `strconv.FormatFloat(f, 'g', -1, 32)` writes it (what `sigs.k8s.io/yaml`
/// makes of a YAML float read into a string).
fn go_float32(f: f64) -> String {
    let f = f as f32;
    if f == 0.0 {
        return "0".into();
    }
    if !f.is_finite() {
        return if f.is_nan() {
            "NaN".into()
        } else if f > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    // Shortest round-trip digits and decimal exponent, from Rust's `{:e}`.
    let e = format!("{:e}", f.abs());
    let (mantissa, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..6).contains(&exp) {
        let (first, rest) = digits.split_at(1);
        let frac = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let esign = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{first}{frac}e{esign}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    let body = if exp < 0 {
        format!("0.{}{digits}", "0".repeat((-exp - 1) as usize))
    } else if exp + 1 >= n {
        format!("{digits}{}", "0".repeat((exp + 1 - n) as usize))
    } else {
        let (int, frac) = digits.split_at((exp + 1) as usize);
        format!("{int}.{frac}")
    };
    format!("{sign}{body}")
}

/// A scalar as the string Go would read for a string field; `None` for null.
fn scalar_string(v: &Value) -> Result<Option<String>, String> {
    match untag(v) {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Bool(b) => Ok(Some(b.to_string())),
        Value::Number(n) => Ok(Some(if let Some(i) = n.as_i64() {
            i.to_string()
        } else if let Some(u) = n.as_u64() {
            u.to_string()
        } else {
            go_float32(n.as_f64().unwrap_or(0.0))
        })),
        other => Err(format!("must be a string, not {}", what(other))),
    }
}

/// A whole number in `min..=max`, or why not.
fn integer(v: &Value, min: i128, max: i128, ty: &str) -> Result<Option<i128>, String> {
    let n = match untag(v) {
        Value::Null => return Ok(None),
        Value::Number(n) => n,
        other => return Err(format!("must be {ty}, not {}", what(other))),
    };
    let value = if let Some(i) = n.as_i64() {
        i128::from(i)
    } else if let Some(u) = n.as_u64() {
        i128::from(u)
    } else {
        let f = n.as_f64().unwrap_or(f64::NAN);
        if !f.is_finite() || f.fract() != 0.0 || f.abs() > 1e30 {
            return Err(format!("must be {ty}, not the number {n}"));
        }
        f as i128
    };
    if value < min || value > max {
        return Err(format!("{value} is out of range for {ty} ({min} to {max})"));
    }
    Ok(Some(value))
}

/// The fields of a mapping, matched to the names a type has.
pub struct Fields<'v> {
    values: BTreeMap<&'static str, &'v Value>,
}

impl<'v> Fields<'v> {
    pub fn get(&self, name: &str) -> Option<&'v Value> {
        self.values
            .get(name)
            .copied()
            .filter(|v| !untag(v).is_null())
    }
}

impl Dec {
    pub fn err(&mut self, at: &FieldPath, message: impl Into<String>) {
        self.errors.push((at.clone(), message.into()));
    }

    /// The fields of the mapping `v` among `names` (exact, else ignoring ASCII case); others
    /// are unknown-field errors. `null` has no fields.
    pub fn fields<'v>(
        &mut self,
        v: &'v Value,
        at: &FieldPath,
        names: &[&'static str],
    ) -> Fields<'v> {
        let mut values = BTreeMap::new();
        match untag(v) {
            Value::Null => {}
            Value::Mapping(map) => {
                for (k, value) in map {
                    let key = match scalar_string(k) {
                        Ok(Some(k)) => k,
                        _ => {
                            self.err(at, "a mapping key must be a string");
                            continue;
                        }
                    };
                    let name = names
                        .iter()
                        .find(|n| **n == key)
                        .or_else(|| names.iter().find(|n| n.eq_ignore_ascii_case(&key)));
                    match name {
                        Some(n) => {
                            values.insert(*n, value);
                        }
                        None => self.err(&at.key(&key), "unknown field"),
                    }
                }
            }
            other => self.err(at, format!("must be a mapping, not {}", what(other))),
        }
        Fields { values }
    }

    pub fn string(&mut self, f: &Fields<'_>, name: &str, at: &FieldPath) -> String {
        self.opt_string(f, name, at).unwrap_or_default()
    }

    pub fn opt_string(&mut self, f: &Fields<'_>, name: &str, at: &FieldPath) -> Option<String> {
        let v = f.get(name)?;
        match scalar_string(v) {
            Ok(s) => s,
            Err(e) => {
                self.err(&at.key(name), e);
                None
            }
        }
    }

    pub fn bool(&mut self, f: &Fields<'_>, name: &str, at: &FieldPath) -> bool {
        match f.get(name).map(untag) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.err(
                    &at.key(name),
                    format!("must be a boolean, not {}", what(other)),
                );
                false
            }
        }
    }

    pub fn int(
        &mut self,
        f: &Fields<'_>,
        name: &str,
        at: &FieldPath,
        min: i128,
        max: i128,
        ty: &str,
    ) -> Option<i128> {
        let v = f.get(name)?;
        match integer(v, min, max, ty) {
            Ok(n) => n,
            Err(e) => {
                self.err(&at.key(name), e);
                None
            }
        }
    }

    pub fn float(&mut self, f: &Fields<'_>, name: &str, at: &FieldPath) -> Option<f64> {
        match f.get(name).map(untag) {
            None => None,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() => Some(x),
                _ => {
                    self.err(&at.key(name), format!("{n} is not a finite number"));
                    None
                }
            },
            Some(other) => {
                self.err(
                    &at.key(name),
                    format!("must be a number, not {}", what(other)),
                );
                None
            }
        }
    }

    /// A list field: each item decoded by `item`; `None` when absent or null.
    pub fn list<T>(
        &mut self,
        f: &Fields<'_>,
        name: &str,
        at: &FieldPath,
        mut item: impl FnMut(&mut Dec, &Value, &FieldPath) -> Option<T>,
    ) -> Option<Vec<T>> {
        let v = f.get(name)?;
        let at = at.key(name);
        match untag(v) {
            Value::Sequence(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .filter_map(|(i, v)| item(self, v, &at.index(i)))
                    .collect(),
            ),
            other => {
                self.err(&at, format!("must be a list, not {}", what(other)));
                None
            }
        }
    }

    pub fn strings(&mut self, f: &Fields<'_>, name: &str, at: &FieldPath) -> Vec<String> {
        self.opt_strings(f, name, at).unwrap_or_default()
    }

    pub fn opt_strings(
        &mut self,
        f: &Fields<'_>,
        name: &str,
        at: &FieldPath,
    ) -> Option<Vec<String>> {
        self.list(f, name, at, |d, v, at| match scalar_string(v) {
            Ok(s) => Some(s.unwrap_or_default()),
            Err(e) => {
                d.err(at, e);
                None
            }
        })
    }

    /// A `map[string]string`.
    pub fn string_map(
        &mut self,
        f: &Fields<'_>,
        name: &str,
        at: &FieldPath,
    ) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let Some(v) = f.get(name) else {
            return out;
        };
        let at = at.key(name);
        match untag(v) {
            Value::Mapping(map) => {
                for (k, v) in map {
                    match (scalar_string(k), scalar_string(v)) {
                        (Ok(Some(k)), Ok(v)) => {
                            out.insert(k, v.unwrap_or_default());
                        }
                        (Ok(Some(k)), Err(e)) => self.err(&at.key(&k), e),
                        _ => self.err(&at, "a mapping key must be a string"),
                    }
                }
            }
            other => self.err(&at, format!("must be a mapping, not {}", what(other))),
        }
        out
    }

    /// A value checked only for being of one of the JSON kinds (for metadata Calico ignores).
    fn any_of(&mut self, f: &Fields<'_>, name: &str, at: &FieldPath, list: bool) {
        match f.get(name).map(untag) {
            None => {}
            Some(Value::Sequence(_)) if list => {}
            Some(Value::Mapping(_)) if !list => {}
            Some(other) => self.err(
                &at.key(name),
                format!(
                    "must be a {}, not {}",
                    if list { "list" } else { "mapping" },
                    what(other)
                ),
            ),
        }
    }
}

/// Kubernetes `ObjectMeta` (every field accepted; the name, namespace, labels and annotations
/// kept).
pub fn metadata(d: &mut Dec, v: Option<&Value>, at: &FieldPath) -> Metadata {
    let Some(v) = v else {
        return Metadata::default();
    };
    let f = d.fields(
        v,
        at,
        &[
            "name",
            "generateName",
            "namespace",
            "selfLink",
            "uid",
            "resourceVersion",
            "generation",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "labels",
            "annotations",
            "ownerReferences",
            "finalizers",
            "managedFields",
        ],
    );
    for name in [
        "generateName",
        "selfLink",
        "uid",
        "resourceVersion",
        "creationTimestamp",
        "deletionTimestamp",
    ] {
        d.opt_string(&f, name, at);
    }
    d.int(
        &f,
        "generation",
        at,
        i128::from(i64::MIN),
        i128::from(i64::MAX),
        "an int64",
    );
    d.int(
        &f,
        "deletionGracePeriodSeconds",
        at,
        i128::from(i64::MIN),
        i128::from(i64::MAX),
        "an int64",
    );
    d.strings(&f, "finalizers", at);
    d.any_of(&f, "ownerReferences", at, true);
    d.any_of(&f, "managedFields", at, true);
    Metadata {
        name: d.string(&f, "name", at),
        namespace: d.string(&f, "namespace", at),
        labels: d.string_map(&f, "labels", at),
        annotations: d.string_map(&f, "annotations", at),
    }
}

/// Kubernetes `ListMeta`.
pub fn list_metadata(d: &mut Dec, v: Option<&Value>, at: &FieldPath) {
    if let Some(v) = v {
        let f = d.fields(
            v,
            at,
            &[
                "selfLink",
                "resourceVersion",
                "continue",
                "remainingItemCount",
            ],
        );
        for name in ["selfLink", "resourceVersion", "continue"] {
            d.opt_string(&f, name, at);
        }
        d.int(
            &f,
            "remainingItemCount",
            at,
            i128::from(i64::MIN),
            i128::from(i64::MAX),
            "an int64",
        );
    }
}

/// `numorstring.Port` from a string.
pub fn port_from_string(s: &str) -> Result<Port, String> {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let num = |t: &str| t.parse::<u16>().ok();
    if digits(s) {
        return num(s)
            .map(|n| Port::Range(n, n))
            .ok_or_else(|| format!("invalid port format ({s})"));
    }
    if let Some((a, b)) = s.split_once(':') {
        if digits(a) && digits(b) {
            let a = num(a).ok_or_else(|| format!("invalid minimum port number in range ({s})"))?;
            let b = num(b).ok_or_else(|| format!("invalid maximum port number in range ({s})"))?;
            if a > b {
                return Err(format!(
                    "minimum port number ({a}) is greater than maximum port number ({b}) in port range"
                ));
            }
            return Ok(Port::Range(a, b));
        }
    }
    if !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Ok(Port::Named(s.to_string()));
    }
    Err(format!("invalid name for named port ({s})"))
}

fn port(d: &mut Dec, v: &Value, at: &FieldPath) -> Option<Port> {
    match untag(v) {
        Value::String(s) => match port_from_string(s) {
            Ok(p) => Some(p),
            Err(e) => {
                d.err(at, e);
                None
            }
        },
        // `null` is read as the number 0, which the validator then refuses.
        Value::Null => Some(Port::Range(0, 0)),
        other => match integer(other, 0, 65535, "a port number") {
            Ok(n) => {
                let n = n.unwrap_or(0) as u16;
                Some(Port::Range(n, n))
            }
            Err(e) => {
                d.err(at, e);
                None
            }
        },
    }
}

/// `numorstring.Protocol`; `None` for null (an absent pointer).
fn protocol(d: &mut Dec, f: &Fields<'_>, name: &str, at: &FieldPath) -> Option<Protocol> {
    let v = f.get(name)?;
    let at = at.key(name);
    match untag(v) {
        Value::String(s) => Some(match s.parse::<u8>() {
            Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Protocol::Num(n),
            _ => Protocol::Name(s.clone()),
        }),
        other => match integer(other, 0, 255, "a protocol number") {
            Ok(n) => n.map(|n| Protocol::Num(n as u8)),
            Err(e) => {
                d.err(&at, e);
                None
            }
        },
    }
}

fn icmp(d: &mut Dec, f: &Fields<'_>, name: &str, at: &FieldPath) -> Option<Icmp> {
    let v = f.get(name)?;
    let at = at.key(name);
    let g = d.fields(v, &at, &["type", "code"]);
    let int = |d: &mut Dec, n| {
        d.int(
            &g,
            n,
            &at,
            i128::from(i64::MIN),
            i128::from(i64::MAX),
            "an integer",
        )
    };
    Some(Icmp {
        icmp_type: int(d, "type").map(|n| n as i64),
        code: int(d, "code").map(|n| n as i64),
    })
}

fn entity(d: &mut Dec, v: Option<&Value>, at: &FieldPath) -> EntityRule {
    let Some(v) = v else {
        return EntityRule::default();
    };
    let f = d.fields(
        v,
        at,
        &[
            "nets",
            "selector",
            "namespaceSelector",
            "services",
            "ports",
            "notNets",
            "notSelector",
            "notPorts",
            "serviceAccounts",
        ],
    );
    let ports = |d: &mut Dec, name| d.list(&f, name, at, port).unwrap_or_default();
    EntityRule {
        nets: d.strings(&f, "nets", at),
        not_nets: d.strings(&f, "notNets", at),
        selector: d.string(&f, "selector", at),
        not_selector: d.string(&f, "notSelector", at),
        namespace_selector: d.string(&f, "namespaceSelector", at),
        ports: ports(d, "ports"),
        not_ports: ports(d, "notPorts"),
        service_accounts: f.get("serviceAccounts").map(|v| {
            let at = at.key("serviceAccounts");
            let g = d.fields(v, &at, &["names", "selector"]);
            ServiceAccounts {
                names: d.strings(&g, "names", &at),
                selector: d.string(&g, "selector", &at),
            }
        }),
        services: f.get("services").map(|v| {
            let at = at.key("services");
            let g = d.fields(v, &at, &["name", "namespace"]);
            ServiceMatch {
                name: d.string(&g, "name", &at),
                namespace: d.string(&g, "namespace", &at),
            }
        }),
    }
}

fn http(d: &mut Dec, v: &Value, at: &FieldPath) -> Http {
    let f = d.fields(v, at, &["methods", "paths"]);
    Http {
        methods: d.strings(&f, "methods", at),
        paths: d
            .list(&f, "paths", at, |d, v, at| {
                let g = d.fields(v, at, &["exact", "prefix", "glob", "template"]);
                Some(HttpPath {
                    exact: d.string(&g, "exact", at),
                    prefix: d.string(&g, "prefix", at),
                    glob: d.string(&g, "glob", at),
                    template: d.string(&g, "template", at),
                })
            })
            .unwrap_or_default(),
    }
}

fn rule(d: &mut Dec, v: &Value, at: &FieldPath) -> Option<Rule> {
    let f = d.fields(
        v,
        at,
        &[
            "action",
            "ipVersion",
            "protocol",
            "icmp",
            "notProtocol",
            "notICMP",
            "source",
            "destination",
            "http",
            "metadata",
        ],
    );
    Some(Rule {
        action: d.string(&f, "action", at),
        ip_version: d
            .int(
                &f,
                "ipVersion",
                at,
                i128::from(i64::MIN),
                i128::from(i64::MAX),
                "an integer",
            )
            .map(|n| n as i64),
        protocol: protocol(d, &f, "protocol", at),
        not_protocol: protocol(d, &f, "notProtocol", at),
        icmp: icmp(d, &f, "icmp", at),
        not_icmp: icmp(d, &f, "notICMP", at),
        source: entity(d, f.get("source"), &at.key("source")),
        destination: entity(d, f.get("destination"), &at.key("destination")),
        http: f.get("http").map(|v| http(d, v, &at.key("http"))),
        metadata: f.get("metadata").map(|v| {
            let at = at.key("metadata");
            let g = d.fields(v, &at, &["annotations"]);
            RuleMetadata {
                annotations: d.string_map(&g, "annotations", &at),
            }
        }),
    })
}

/// The `spec` of a policy of `kind` (only that kind's fields).
pub fn policy_spec(d: &mut Dec, kind: PolicyKind, v: Option<&Value>, at: &FieldPath) -> PolicySpec {
    let Some(v) = v else {
        return PolicySpec::default();
    };
    let mut names = vec![
        "tier",
        "order",
        "ingress",
        "egress",
        "selector",
        "types",
        "serviceAccountSelector",
        "performanceHints",
    ];
    if !kind.namespaced() {
        names.extend([
            "doNotTrack",
            "preDNAT",
            "applyOnForward",
            "namespaceSelector",
        ]);
    }
    if kind.staged() {
        names.push("stagedAction");
    }
    let f = d.fields(v, at, &names);
    let rules = |d: &mut Dec, name| d.list(&f, name, at, rule);
    let ingress = rules(d, "ingress");
    let egress = rules(d, "egress");
    let performance_hints = d.opt_strings(&f, "performanceHints", at);
    let mut spec = PolicySpec {
        tier: d.string(&f, "tier", at),
        order: d.float(&f, "order", at),
        selector: d.string(&f, "selector", at),
        namespace_selector: d.string(&f, "namespaceSelector", at),
        service_account_selector: d.string(&f, "serviceAccountSelector", at),
        types: d.strings(&f, "types", at),
        do_not_track: d.bool(&f, "doNotTrack", at),
        pre_dnat: d.bool(&f, "preDNAT", at),
        apply_on_forward: d.bool(&f, "applyOnForward", at),
        staged_action: d.string(&f, "stagedAction", at),
        set_fields: Vec::new(),
        ingress: Vec::new(),
        egress: Vec::new(),
        performance_hints: Vec::new(),
    };
    // Go's zero values: a list given (even empty) is not; an empty string or false is.
    let set = [
        ("order", spec.order.is_some()),
        ("ingress", ingress.is_some()),
        ("egress", egress.is_some()),
        ("selector", !spec.selector.is_empty()),
        (
            "serviceAccountSelector",
            !spec.service_account_selector.is_empty(),
        ),
        ("namespaceSelector", !spec.namespace_selector.is_empty()),
        ("doNotTrack", spec.do_not_track),
        ("preDNAT", spec.pre_dnat),
        ("applyOnForward", spec.apply_on_forward),
        ("performanceHints", performance_hints.is_some()),
    ];
    spec.set_fields = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
    spec.ingress = ingress.unwrap_or_default();
    spec.egress = egress.unwrap_or_default();
    spec.performance_hints = performance_hints.unwrap_or_default();
    spec
}

pub fn tier_spec(d: &mut Dec, v: Option<&Value>, at: &FieldPath) -> TierSpec {
    let Some(v) = v else {
        return TierSpec::default();
    };
    let f = d.fields(v, at, &["order", "defaultAction"]);
    TierSpec {
        order: d.float(&f, "order", at),
        default_action: d.opt_string(&f, "defaultAction", at),
    }
}

/// A Tier's `status` (conditions; not used).
pub fn tier_status(d: &mut Dec, v: Option<&Value>, at: &FieldPath) {
    if let Some(v) = v {
        let f = d.fields(v, at, &["conditions"]);
        d.any_of(&f, "conditions", at, true);
    }
}

pub fn workload_spec(d: &mut Dec, v: Option<&Value>, at: &FieldPath) -> WorkloadEndpointSpec {
    let Some(v) = v else {
        return WorkloadEndpointSpec::default();
    };
    let f = d.fields(
        v,
        at,
        &[
            "orchestrator",
            "workload",
            "node",
            "containerID",
            "pod",
            "endpoint",
            "serviceAccountName",
            "ipNetworks",
            "ipNATs",
            "ipv4Gateway",
            "ipv6Gateway",
            "profiles",
            "interfaceName",
            "mac",
            "ports",
            "allowSpoofedSourcePrefixes",
            "qosControls",
        ],
    );
    for name in ["ipv4Gateway", "ipv6Gateway"] {
        d.opt_string(&f, name, at);
    }
    d.strings(&f, "allowSpoofedSourcePrefixes", at);
    d.any_of(&f, "ipNATs", at, true);
    d.any_of(&f, "qosControls", at, false);
    WorkloadEndpointSpec {
        orchestrator: d.string(&f, "orchestrator", at),
        workload: d.string(&f, "workload", at),
        node: d.string(&f, "node", at),
        container_id: d.string(&f, "containerID", at),
        pod: d.string(&f, "pod", at),
        endpoint: d.string(&f, "endpoint", at),
        service_account_name: d.string(&f, "serviceAccountName", at),
        ip_networks: d.strings(&f, "ipNetworks", at),
        profiles: d.opt_strings(&f, "profiles", at),
        interface_name: d.string(&f, "interfaceName", at),
        mac: d.string(&f, "mac", at),
        ports: d
            .list(&f, "ports", at, |d, v, at| {
                let g = d.fields(v, at, &["name", "protocol", "port", "hostPort", "hostIP"]);
                Some(EndpointPort {
                    name: d.string(&g, "name", at),
                    protocol: protocol(d, &g, "protocol", at),
                    port: d
                        .int(&g, "port", at, 0, 65535, "a port number")
                        .unwrap_or(0) as u16,
                    host_port: d
                        .int(&g, "hostPort", at, 0, 65535, "a port number")
                        .unwrap_or(0) as u16,
                    host_ip: d.string(&g, "hostIP", at),
                })
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_as_go_writes_them() {
        for (f, s) in [
            (1.0, "1"),
            (1.5, "1.5"),
            (1.1, "1.1"),
            (100000.0, "100000"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (-2.5, "-2.5"),
            (0.0, "0"),
        ] {
            assert_eq!(go_float32(f), s, "{f}");
        }
    }

    #[test]
    fn ports_as_numorstring_reads_them() {
        assert_eq!(port_from_string("80"), Ok(Port::Range(80, 80)));
        assert_eq!(port_from_string("0080"), Ok(Port::Range(80, 80)));
        assert_eq!(port_from_string("1:2"), Ok(Port::Range(1, 2)));
        assert_eq!(port_from_string("http"), Ok(Port::Named("http".into())));
        assert_eq!(port_from_string("1-2"), Ok(Port::Named("1-2".into())));
        assert!(port_from_string("65536").is_err());
        assert!(port_from_string("200:100").is_err());
        assert!(port_from_string("1:70000").is_err());
        assert!(port_from_string("").is_err());
        assert!(port_from_string("a b").is_err());
        assert!(port_from_string(&"a".repeat(129)).is_err());
    }

    fn decode_rule(yaml: &str) -> (Option<Rule>, Vec<DecodeError>) {
        let v: Value = serde_norway::from_str(yaml).unwrap();
        let mut d = Dec::default();
        let r = rule(&mut d, &v, &FieldPath::root());
        (r, d.errors)
    }

    #[test]
    fn strict_and_go_like() {
        let (r, e) = decode_rule(
            "Action: Allow\nprotocol: '6'\ndestination: {ports: [80, '81:82', http]}\n",
        );
        assert!(e.is_empty(), "{e:?}");
        let r = r.unwrap();
        assert_eq!(r.action, "Allow");
        assert_eq!(r.protocol, Some(Protocol::Num(6)));
        assert_eq!(
            r.destination.ports,
            vec![
                Port::Range(80, 80),
                Port::Range(81, 82),
                Port::Named("http".into())
            ]
        );
        let (_, e) = decode_rule("action: Allow\nsorce: {}\nprotocol: 256\nipVersion: x\n");
        let msgs: Vec<String> = e.iter().map(|(p, m)| format!("{p}: {m}")).collect();
        assert!(
            msgs.contains(&"sorce: unknown field".to_string()),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("protocol: 256 is out of range")),
            "{msgs:?}"
        );
        assert!(
            msgs.iter()
                .any(|m| m.starts_with("ipVersion: must be an integer")),
            "{msgs:?}"
        );
        let (r, e) = decode_rule("action: 1\nprotocol: ~\nhttp: {}\nipVersion: 4.0\n");
        assert!(e.is_empty(), "{e:?}");
        let r = r.unwrap();
        assert_eq!(
            (r.action.as_str(), r.protocol, r.ip_version),
            ("1", None, Some(4))
        );
        assert!(r.http.is_some());
    }
}
