//! The filter's stats in a dynamic module. Envoy lets a module define stats only while it
//! creates a filter configuration (`*_config_new`; later definitions are refused as frozen), so:
//!
//! * every fixed stat (`Metrics::define`) is defined then, on the main thread, into the
//!   configuration's [`Definitions`], which never change afterwards;
//! * the HTTP filter's per-policy families (`alp_policy_requests_total`, ...) are declared then
//!   with their label names; each (tier, policy, action) series is a set of label values, made
//!   when the configuration's tick first adds a count to it, in the configuration's
//!   [`RuntimeSeries`];
//! * the network filter's counters take no labels in this ABI: its fixed stats carry their
//!   labels in the name as the wasm filter's do (`metrics::stat_name`, cut into Prometheus
//!   labels by the same tag extractors), and it has no per-policy series (nothing can be
//!   defined once connections flow) and no gauges.
//!
//! Ids handed to `alp-filter`'s `Metrics` index [`Definitions::series`]; ids from
//! [`RUNTIME_BASE`] on index the runtime series.

use alp_filter::metrics::stat_name;
use std::cell::RefCell;
use std::sync::Arc;

/// The first id of a runtime series.
pub const RUNTIME_BASE: u32 = 1 << 24;

/// Which ABI defines and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Http,
    Network,
}

/// One counter series: Envoy's id and, for a labeled family, the label values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Series {
    pub envoy_id: usize,
    pub label_values: Vec<String>,
}

/// A labeled HTTP family as Envoy defined it.
#[derive(Debug, Clone)]
struct Family {
    name: String,
    label_names: Vec<String>,
    envoy_id: usize,
}

/// What a configuration defined.
#[derive(Debug, Default)]
pub struct Definitions {
    families: Vec<Family>,
    /// Unlabeled counters (network) by encoded name.
    plain: Vec<(String, usize)>,
    pub series: Vec<Series>,
    /// Envoy gauge ids by our id.
    pub gauges: Vec<(String, usize)>,
}

/// How Envoy defines a stat while a configuration is created (the ABI call), so the table can
/// be tested without Envoy: `None` when Envoy refused.
pub trait Define {
    fn counter(&self, name: &str, label_names: &[&str]) -> Option<usize>;
    fn gauge(&self, name: &str) -> Option<usize>;
}

impl Definitions {
    /// The series of `family` with `labels`, defining the family first if needed.
    pub fn define_counter(
        &mut self,
        kind: Kind,
        define: &dyn Define,
        family: &str,
        labels: &[(&str, &str)],
    ) -> Option<u32> {
        let series = match kind {
            Kind::Http => {
                let names: Vec<&str> = labels.iter().map(|(l, _)| *l).collect();
                let envoy_id = self.family(define, family, &names)?;
                Series {
                    envoy_id,
                    label_values: labels.iter().map(|(_, v)| v.to_string()).collect(),
                }
            }
            Kind::Network => {
                let name = stat_name(family, labels);
                let envoy_id = match self.plain.iter().find(|(n, _)| *n == name) {
                    Some((_, id)) => *id,
                    None => {
                        let id = define.counter(&name, &[])?;
                        self.plain.push((name, id));
                        id
                    }
                };
                Series {
                    envoy_id,
                    label_values: vec![],
                }
            }
        };
        if let Some(i) = self.series.iter().position(|s| *s == series) {
            return u32::try_from(i).ok();
        }
        self.series.push(series);
        u32::try_from(self.series.len() - 1).ok()
    }

    /// Declares a labeled family whose series the tick makes later (HTTP only).
    pub fn declare_family(&mut self, define: &dyn Define, family: &str, label_names: &[&str]) {
        let _ = self.family(define, family, label_names);
    }

    fn family(&mut self, define: &dyn Define, family: &str, names: &[&str]) -> Option<usize> {
        if let Some(f) = self
            .families
            .iter()
            .find(|f| f.name == family && f.label_names == names)
        {
            return Some(f.envoy_id);
        }
        let envoy_id = define.counter(family, names)?;
        self.families.push(Family {
            name: family.to_string(),
            label_names: names.iter().map(|n| n.to_string()).collect(),
            envoy_id,
        });
        Some(envoy_id)
    }

    pub fn define_gauge(&mut self, define: &dyn Define, name: &str) -> Option<u32> {
        if let Some(i) = self.gauges.iter().position(|(n, _)| n == name) {
            return u32::try_from(i).ok();
        }
        let envoy_id = define.gauge(name)?;
        self.gauges.push((name.to_string(), envoy_id));
        u32::try_from(self.gauges.len() - 1).ok()
    }

    /// A new series of a declared family (`None`: not declared with these labels, or a
    /// network filter).
    pub fn runtime_series(
        &self,
        kind: Kind,
        runtime: &RuntimeSeries,
        family: &str,
        labels: &[(&str, &str)],
    ) -> Option<u32> {
        if kind != Kind::Http {
            return None;
        }
        let f = self.families.iter().find(|f| {
            f.name == family
                && f.label_names.len() == labels.len()
                && f.label_names.iter().zip(labels).all(|(n, (l, _))| n == l)
        })?;
        let series = Series {
            envoy_id: f.envoy_id,
            label_values: labels.iter().map(|(_, v)| v.to_string()).collect(),
        };
        let mut all = runtime.0.try_borrow_mut().ok()?;
        let i = match all.iter().position(|s| **s == series) {
            Some(i) => i,
            None => {
                all.push(Arc::new(series));
                all.len() - 1
            }
        };
        RUNTIME_BASE.checked_add(u32::try_from(i).ok()?)
    }

    /// The series behind an id.
    pub fn series<'a>(&'a self, runtime: &'a RuntimeSeries, id: u32) -> Option<SeriesRef<'a>> {
        match id.checked_sub(RUNTIME_BASE) {
            None => self.series.get(id as usize).map(SeriesRef::Fixed),
            Some(i) => {
                let all = runtime.0.try_borrow().ok()?;
                Some(SeriesRef::Runtime(Arc::clone(all.get(i as usize)?)))
            }
        }
    }
}

/// A series found by id.
#[derive(Debug)]
pub enum SeriesRef<'a> {
    Fixed(&'a Series),
    Runtime(Arc<Series>),
}

impl SeriesRef<'_> {
    pub fn get(&self) -> &Series {
        match self {
            SeriesRef::Fixed(s) => s,
            SeriesRef::Runtime(s) => s,
        }
    }
}

/// A configuration's per-policy series (made on its tick, on Envoy's main thread).
#[derive(Debug, Default)]
pub struct RuntimeSeries(RefCell<Vec<Arc<Series>>>);

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[derive(Default)]
    struct FakeEnvoy {
        defined: RefCell<Vec<(String, Vec<String>)>>,
        frozen: bool,
    }

    impl Define for FakeEnvoy {
        fn counter(&self, name: &str, label_names: &[&str]) -> Option<usize> {
            if self.frozen {
                return None;
            }
            let mut d = self.defined.borrow_mut();
            d.push((
                name.into(),
                label_names.iter().map(|s| s.to_string()).collect(),
            ));
            Some(d.len())
        }
        fn gauge(&self, _name: &str) -> Option<usize> {
            (!self.frozen).then_some(1)
        }
    }

    #[test]
    fn http_families_are_defined_once_with_their_label_names() {
        let envoy = FakeEnvoy::default();
        let mut d = Definitions::default();
        let a = d.define_counter(
            Kind::Http,
            &envoy,
            "alp_requests_total",
            &[("alp_decision", "allowed"), ("alp_reason", "allow")],
        );
        let b = d.define_counter(
            Kind::Http,
            &envoy,
            "alp_requests_total",
            &[("alp_decision", "denied"), ("alp_reason", "policy_denied")],
        );
        let again = d.define_counter(
            Kind::Http,
            &envoy,
            "alp_requests_total",
            &[("alp_decision", "allowed"), ("alp_reason", "allow")],
        );
        assert_eq!((a, b, again), (Some(0), Some(1), Some(0)));
        assert_eq!(envoy.defined.borrow().len(), 1, "one family");
        assert_eq!(d.series[1].label_values, ["denied", "policy_denied"]);
    }

    #[test]
    fn network_counters_carry_their_labels_in_the_name() {
        let envoy = FakeEnvoy::default();
        let mut d = Definitions::default();
        let id = d.define_counter(
            Kind::Network,
            &envoy,
            "alp_connections_total",
            &[("alp_decision", "denied")],
        );
        assert_eq!(id, Some(0));
        assert_eq!(
            envoy.defined.borrow()[0].0,
            "alp_decision=.=denied;.;alp_connections_total"
        );
        assert!(envoy.defined.borrow()[0].1.is_empty());
    }

    #[test]
    fn runtime_series_are_of_declared_families_only() {
        let envoy = FakeEnvoy::default();
        let mut d = Definitions::default();
        d.declare_family(
            &envoy,
            "alp_policy_requests_total",
            &["alp_tier", "alp_policy", "alp_action"],
        );
        let runtime = RuntimeSeries::default();
        let labels = [
            ("alp_tier", "default"),
            ("alp_policy", "db"),
            ("alp_action", "allow"),
        ];
        let id = d.runtime_series(Kind::Http, &runtime, "alp_policy_requests_total", &labels);
        assert_eq!(id, Some(RUNTIME_BASE));
        assert_eq!(
            d.runtime_series(Kind::Http, &runtime, "alp_policy_requests_total", &labels),
            id
        );
        let s = d.series(&runtime, RUNTIME_BASE).unwrap();
        assert_eq!(s.get().label_values, ["default", "db", "allow"]);
        assert_eq!(
            d.runtime_series(Kind::Http, &runtime, "undeclared", &labels),
            None
        );
        assert_eq!(
            d.runtime_series(
                Kind::Network,
                &runtime,
                "alp_policy_requests_total",
                &labels
            ),
            None
        );
        assert!(d.series(&runtime, RUNTIME_BASE + 1).is_none());
        assert!(d.series(&runtime, 5).is_none());
    }

    #[test]
    fn a_refused_definition_is_no_stat_not_an_error() {
        let envoy = FakeEnvoy {
            frozen: true,
            ..Default::default()
        };
        let mut d = Definitions::default();
        assert_eq!(d.define_counter(Kind::Http, &envoy, "x", &[]), None);
        assert_eq!(d.define_gauge(&envoy, "g"), None);
    }
}
