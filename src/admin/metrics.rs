//! Prometheus metrics with stable names (dashboards and the chart's alerts rely on them):
//!
//! - `epps_reconcile_total{result}` and `epps_reconcile_duration_seconds{result}`, result one of
//!   `fresh` (nothing to do), `written`, `failed` (token could not be renewed), `error` (API error);
//! - `epps_token_fetch_total{result,reason}`: real GetAuthorizationToken calls (cache hits are not
//!   calls), reason is the error label or `none`;
//! - `epps_secret_token_expiry_timestamp_seconds{namespace,name}` and `epps_managed_secrets`: read
//!   from the Secret watch cache at scrape time, so deleted Secrets never leave stale series.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use kube::runtime::reflector::Store;
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::ConstGauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::{Registry, Unit},
};

use crate::{
    Error,
    aws::{TokenSource, identity::Identity, token::Token},
    k8s::cached_secret::CachedSecret,
};

/// The `result` of one reconcile, as `epps_reconcile_total` and `epps_reconcile_duration_seconds`
/// label it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// The Secret holds a token that is not due: nothing was done.
    Fresh,
    /// A token was written.
    Written,
    /// The token could not be renewed (or the spec cannot be acted on); reported on the status.
    Failed,
    /// A Kubernetes API call failed; retried with backoff.
    Error,
    /// The resource is being deleted: nothing to do.
    Skipped,
}

impl Reconciled {
    pub fn label(self) -> &'static str {
        match self {
            Reconciled::Fresh => "fresh",
            Reconciled::Written => "written",
            Reconciled::Failed => "failed",
            Reconciled::Error => "error",
            Reconciled::Skipped => "skipped",
        }
    }
}

/// `epps_token_fetch_total` labels of a successful call.
const FETCH_SUCCESS: FetchLabels = FetchLabels {
    result: "success",
    reason: "none",
};
/// `epps_token_fetch_total`'s `result` of a failed call (its `reason` is the error's label).
const FETCH_ERROR: &str = "error";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    result: &'static str,
    reason: &'static str,
}

/// All metrics of one operator process.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    durations: Family<ResultLabel, Histogram>,
    fetches: Family<FetchLabels, Counter>,
    secrets: Arc<SecretsCollector>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let reconciles = Family::<ResultLabel, Counter>::default();
        registry.register("epps_reconcile", "Reconciles by result", reconciles.clone());
        let durations = Family::<ResultLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        registry.register_with_unit(
            "epps_reconcile_duration",
            "Reconcile duration by result",
            Unit::Seconds,
            durations.clone(),
        );
        let fetches = Family::<FetchLabels, Counter>::default();
        registry.register(
            "epps_token_fetch",
            "GetAuthorizationToken calls by result and failure reason",
            fetches.clone(),
        );
        let secrets = Arc::new(SecretsCollector::default());
        registry.register_collector(Box::new(secrets.clone()));
        Self {
            registry,
            reconciles,
            durations,
            fetches,
            secrets,
        }
    }
}

impl Metrics {
    /// Records one reconcile.
    pub fn reconciled(&self, result: Reconciled, seconds: f64) {
        let label = ResultLabel {
            result: result.label(),
        };
        self.reconciles.get_or_create(&label).inc();
        self.durations.get_or_create(&label).observe(seconds);
    }

    fn fetched(&self, outcome: &Result<Token, Error>) {
        let labels = match outcome {
            Ok(_) => FETCH_SUCCESS,
            Err(e) => FetchLabels {
                result: FETCH_ERROR,
                reason: e.label(),
            },
        };
        self.fetches.get_or_create(&labels).inc();
    }

    /// Lets the Secret gauges read the controller's Secret cache.
    pub fn watch_secrets(&self, store: Store<CachedSecret>) {
        *crate::lock(&self.secrets.store) = Some(store);
    }

    /// Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Wraps a [`TokenSource`] to count real AWS calls.
pub struct Metered<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S> Metered<S> {
    pub fn new(inner: S, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }
}

impl<S: TokenSource> TokenSource for Metered<S> {
    fn fetch<'a>(&'a self, identity: &'a Identity) -> BoxFuture<'a, Result<Token, Error>> {
        Box::pin(async move {
            let outcome = self.inner.fetch(identity).await;
            self.metrics.fetched(&outcome);
            outcome
        })
    }
}

#[derive(Debug, Default)]
struct SecretsCollector {
    store: Mutex<Option<Store<CachedSecret>>>,
}

impl Collector for SecretsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let secrets = match &*crate::lock(&self.store) {
            Some(store) => store.state(),
            None => Vec::new(),
        };
        let count = ConstGauge::new(secrets.len() as i64);
        let metric = encoder.encode_descriptor(
            "epps_managed_secrets",
            "Secrets managed by this operator",
            None,
            count.metric_type(),
        )?;
        count.encode(metric)?;
        let mut family = encoder.encode_descriptor(
            "epps_secret_token_expiry_timestamp_seconds",
            "When the token in each managed Secret expires (unix seconds)",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for s in &secrets {
            let Some(expires) = s.state.expires_at else {
                continue;
            };
            let labels = [("namespace", s.namespace()), ("name", s.name())];
            ConstGauge::new(expires.timestamp()).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names() {
        let m = Metrics::default();
        m.reconciled(Reconciled::Written, 0.01);
        m.fetched(&Err(Error::AccessDenied {
            detail: String::new(),
        }));
        let text = m.encode();
        assert!(
            text.contains(r#"epps_reconcile_total{result="written"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("epps_reconcile_duration_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains(r#"epps_token_fetch_total{result="error",reason="AccessDenied"} 1"#),
            "{text}"
        );
        assert!(text.contains("epps_managed_secrets 0"), "{text}");
        assert!(
            text.contains("# TYPE epps_secret_token_expiry_timestamp_seconds gauge"),
            "{text}"
        );
    }
}
