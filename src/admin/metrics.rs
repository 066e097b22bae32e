//! Prometheus metrics with stable names (dashboards and the chart's alerts rely on them):
//!
//! - `epps_reconcile_total{result}` and `epps_reconcile_duration_seconds{result}`, result one of
//!   `fresh` (nothing to do), `written`, `failed` (token could not be renewed), `error` (API error);
//! - `epps_token_fetch_total{service,region,result,reason}`: real GetAuthorizationToken calls
//!   (cache hits are not calls) by source (`ecr-public`/us-east-1, or `ecr` and the private
//!   registries' region), reason is the error label or `none`: a failing region stands out;
//! - `epps_secret_token_expiry_timestamp_seconds{namespace,name}` and `epps_managed_secrets`: read
//!   from the Secret watch cache at scrape time, so deleted Secrets never leave stale series, and
//!   only for Secrets a live resource of this operator owns: a Secret anyone labels like ours
//!   cannot feed the expiry alert.
//!
//! The per-Secret family is one line per managed Secret, so an answer is produced in chunks as the
//! client reads it ([`Metrics::exposition`]) rather than in one buffer that grows by doubling
//! (BENCHMARKS.md "Memory" has what that saves).

use std::{
    borrow::Cow,
    fmt::Write,
    sync::{Arc, Mutex},
};

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
    aws::{TokenSource, identity::Identity, source::Source, token::Token},
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

/// `epps_token_fetch_total`'s `result` of a successful call (its `reason` is then `none`).
const FETCH_SUCCESS: &str = "success";
/// `epps_token_fetch_total`'s `result` of a failed call (its `reason` is the error's label).
const FETCH_ERROR: &str = "error";
/// Distinct private regions labelled one by one; any further region is labelled `other`. Real
/// Regions are a few dozen; region names the schema accepts but AWS does not know must not grow
/// the series without bound.
const MAX_REGION_LABELS: usize = 48;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FetchLabels {
    service: &'static str,
    region: String,
    result: &'static str,
    reason: &'static str,
}

/// All metrics of one operator process.
pub struct Metrics {
    registry: Registry,
    reconciles: Family<ResultLabel, Counter>,
    durations: Family<ResultLabel, Histogram>,
    fetches: Family<FetchLabels, Counter>,
    /// The private regions labelled so far.
    regions: Mutex<std::collections::BTreeSet<String>>,
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
            regions: Mutex::default(),
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

    fn fetched(&self, source: &Source, outcome: &Result<Token, Error>) {
        let (result, reason) = match outcome {
            Ok(_) => (FETCH_SUCCESS, "none"),
            Err(e) => (FETCH_ERROR, e.label()),
        };
        let labels = FetchLabels {
            service: source.service(),
            region: self.region_label(source),
            result,
            reason,
        };
        self.fetches.get_or_create(&labels).inc();
    }

    /// `source`'s region, or `other` once [`MAX_REGION_LABELS`] private regions have been seen.
    fn region_label(&self, source: &Source) -> String {
        let region = source.region();
        if *source == Source::Public {
            return region.to_owned();
        }
        let mut seen = crate::lock(&self.regions);
        if seen.contains(region) || seen.len() < MAX_REGION_LABELS {
            seen.insert(region.to_owned());
            return region.to_owned();
        }
        "other".to_owned()
    }

    /// Lets the Secret gauges read a Secret cache, counting the Secrets `owned` accepts.
    pub fn watch_secrets(&self, store: Store<CachedSecret>, owned: Owned) {
        *crate::lock(&self.secrets.store) = Some((store, owned));
    }

    /// The OpenMetrics text exposition in chunks, each made when it is asked for: the registry,
    /// then the per-Secret family `EXPIRY_LINES_PER_CHUNK` lines at a time from a snapshot of the
    /// Secret cache, then `# EOF`.
    pub fn exposition(&self) -> impl Iterator<Item = String> + Send + 'static {
        let mut head = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode_registry(&mut head, &self.registry);
        let _ = write!(
            head,
            "# HELP {EXPIRY} {EXPIRY_HELP}\n# TYPE {EXPIRY} gauge\n"
        );
        let mut expiries = self
            .secrets
            .snapshot()
            .into_iter()
            .filter_map(|s| s.state.expires_at.map(|t| (s, t.timestamp())))
            .peekable();
        let lines = std::iter::from_fn(move || {
            expiries.peek()?;
            let mut chunk = String::with_capacity(EXPIRY_LINES_PER_CHUNK * 100);
            for (secret, expires) in expiries.by_ref().take(EXPIRY_LINES_PER_CHUNK) {
                let _ = writeln!(
                    chunk,
                    r#"{EXPIRY}{{namespace="{}",name="{}"}} {expires}"#,
                    label_value(secret.namespace()),
                    label_value(secret.name()),
                );
            }
            Some(chunk)
        });
        std::iter::once(head)
            .chain(lines)
            .chain(std::iter::once("# EOF\n".to_owned()))
    }

    /// The whole exposition in one `String` (tests; the server streams [`Metrics::exposition`]).
    pub fn encode(&self) -> String {
        self.exposition().collect()
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
    fn fetch<'a>(
        &'a self,
        identity: &'a Identity,
        source: &'a Source,
    ) -> BoxFuture<'a, Result<Token, Error>> {
        Box::pin(async move {
            let outcome = self.inner.fetch(identity, source).await;
            self.metrics.fetched(source, &outcome);
            outcome
        })
    }

    fn forget(&self, identity: &Identity) {
        self.inner.forget(identity);
    }
}

/// The per-Secret expiry family, written by [`Metrics::exposition`] rather than the registry.
const EXPIRY: &str = "epps_secret_token_expiry_timestamp_seconds";
const EXPIRY_HELP: &str = "When the token in each managed Secret expires (unix seconds)";
/// Lines per chunk of a `/metrics` answer: large enough that chunking costs nothing, small
/// enough that a chunk is a small buffer.
const EXPIRY_LINES_PER_CHUNK: usize = 500;

/// A label value in the text format: `\`, `"` and line feeds escaped. Names and namespaces never
/// hold them (Kubernetes validates both), but the format must not break if one ever did.
fn label_value(v: &str) -> Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(v);
    }
    Cow::Owned(
        v.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

/// Whether a cached Secret belongs to a live resource of this operator.
pub type Owned = Arc<dyn Fn(&CachedSecret) -> bool + Send + Sync>;

/// `epps_managed_secrets`, and the snapshot the per-Secret family is written from.
#[derive(Default)]
struct SecretsCollector {
    store: Mutex<Option<(Store<CachedSecret>, Owned)>>,
}

impl std::fmt::Debug for SecretsCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsCollector").finish_non_exhaustive()
    }
}

impl SecretsCollector {
    /// The owned Secrets of the cache.
    fn snapshot(&self) -> Vec<Arc<CachedSecret>> {
        let Some((store, owned)) = crate::lock(&self.store).clone() else {
            return Vec::new();
        };
        let mut secrets = store.state();
        secrets.retain(|s| owned(s));
        secrets
    }
}

impl Collector for SecretsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let managed = self.snapshot().len();
        let count = ConstGauge::new(i64::try_from(managed).unwrap_or(i64::MAX));
        let metric = encoder.encode_descriptor(
            "epps_managed_secrets",
            "Secrets managed by this operator",
            None,
            count.metric_type(),
        )?;
        count.encode(metric)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_the_documented_names() {
        let m = Metrics::default();
        m.reconciled(Reconciled::Written, 0.01);
        let denied = Error::AccessDenied {
            service: "ecr",
            detail: String::new(),
            cause: None,
        };
        m.fetched(&Source::private("eu-west-1"), &Err(denied));
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
            text.contains(
                r#"epps_token_fetch_total{service="ecr",region="eu-west-1",result="error",reason="AccessDenied"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains("epps_managed_secrets 0"), "{text}");
        assert!(
            text.contains("# TYPE epps_secret_token_expiry_timestamp_seconds gauge"),
            "{text}"
        );
    }

    /// A Secret cache holding `n` Secrets of a cluster resource with UID `u1`, tokens expiring at
    /// `expires`, and `foreign` more labelled the same way for a resource `gone`.
    fn store_of(
        n: usize,
        foreign: usize,
        expires: chrono::DateTime<chrono::Utc>,
    ) -> Store<CachedSecret> {
        use kube::{api::PartialObjectMeta, runtime::watcher::Event};

        use crate::{
            aws::token::test_token,
            crd::PullSecretSettings,
            pull_secret::{Owner, build},
        };
        let (store, mut writer) = kube::runtime::reflector::store();
        let token = test_token(
            "pw",
            expires - chrono::Duration::hours(12),
            chrono::Duration::hours(12),
        );
        let settings = PullSecretSettings::default();
        let secrets = (0..n).map(|i| (format!("s{i}"), "u1"));
        let secrets = secrets.chain((0..foreign).map(|i| (format!("f{i}"), "gone")));
        for (name, uid) in secrets {
            let owner = Owner::Label(uid.into());
            let secret = build(
                &owner.spec(&name, "ns", &settings, None),
                &crate::pull_secret::Entries::from([(Source::Public, token.clone())]),
            );
            let meta = PartialObjectMeta::<k8s_openapi::api::core::v1::Secret> {
                types: None,
                metadata: secret.metadata,
                _phantom: Default::default(),
            };
            writer.apply_watcher_event(&Event::Apply(CachedSecret::from(meta)));
        }
        store
    }

    #[test]
    fn the_answer_comes_in_chunks_with_one_line_per_secret_and_ends_with_eof() {
        let expires = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let m = Metrics::default();
        let n = 2 * EXPIRY_LINES_PER_CHUNK + 1;
        // The cache also holds Secrets no live resource owns: they are not counted.
        let owned: Owned = Arc::new(|s| s.cluster_owner() == Some("u1"));
        m.watch_secrets(store_of(n, 10, expires), owned);
        let chunks: Vec<String> = m.exposition().collect();
        // The registry, two full chunks and one of a single line, then `# EOF`.
        assert_eq!(chunks.len(), 5, "chunks");
        assert!(
            chunks[0].contains(&format!("epps_managed_secrets {n}\n")),
            "{}",
            chunks[0]
        );
        assert!(
            chunks[0].ends_with(&format!("# TYPE {EXPIRY} gauge\n")),
            "{}",
            chunks[0]
        );
        assert_eq!(chunks[4], "# EOF\n");
        let text = chunks.concat();
        assert_eq!(text.matches("# EOF").count(), 1);
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(EXPIRY)).collect();
        assert_eq!(lines.len(), n);
        assert!(
            lines.contains(&r#"epps_secret_token_expiry_timestamp_seconds{namespace="ns",name="s7"} 1800000000"#),
            "{lines:?}"
        );
        assert_eq!(chunks[1].lines().count(), EXPIRY_LINES_PER_CHUNK);
    }

    #[test]
    fn label_values_are_escaped() {
        assert!(matches!(
            label_value("kube-system"),
            Cow::Borrowed("kube-system")
        ));
        assert_eq!(label_value("a\\b\"c\nd"), r#"a\\b\"c\nd"#);
    }
}
