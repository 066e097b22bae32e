//! Shared set-up for the operator's integration tests, the benchmark and the demo: a Kubernetes
//! API (the in-repo emulator, or the real control plane), the fake ECR Public, the clients and AWS
//! configuration pointing at them, and the real operator running in-process.
//!
//! One test body runs on either API: [`Env::start`] uses the emulator, [`Env::start_real`] the
//! real kube-apiserver of [`ControlPlane::shared`]. On the real server each test gets a namespace
//! of its own ([`Env::ns`]), tests take turns (one at a time per process, as the cluster kind's
//! operator sees every namespace), and each starts by removing what earlier ones left.

mod logs;
mod operator;
pub mod process;
mod real;
mod secrets;

use std::{sync::Arc, time::Duration};

use aws_config::{BehaviorVersion, Region, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};
use aws_credential_types::{Credentials, provider::SharedCredentialsProvider};
use ecr_public_pull_secret_operator::{
    aws::AwsSettings,
    crd::{ClusterEcrPublicPullSecret, EcrPublicPullSecret},
};
use kube::CustomResourceExt;
use serde_json::json;

pub use crate::backend::Kube;
use crate::{
    backend::Real,
    control_plane::{ControlPlane, User},
    ecr::FakeEcrPublic,
    kube_api::{ApiServer, Emulator},
};
pub use logs::*;
pub use operator::*;
pub use real::apply_crds;
pub use secrets::*;

/// Resource keys (the emulator's, which the real backend's mirror uses too).
pub const CRS: &str = "ecrpublicpullsecrets.ecrpublic.pullsecrets.dev";
pub const CLUSTER_CRS: &str = "clusterecrpublicpullsecrets.ecrpublic.pullsecrets.dev";
pub const SECRETS: &str = "secrets";
pub const EVENTS: &str = "events.events.k8s.io";

/// Label on every namespace a real-server test creates, so the next test can remove them.
pub const TEST_NAMESPACE_LABEL: &str = "e2e.ecrpublic.pullsecrets.dev/test";

/// Which Kubernetes API a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Api {
    /// The in-repo emulator: fast, fault injection, no Go needed.
    Emulator,
    /// kube-apiserver, etcd and kube-controller-manager built by `tests/cluster/build.sh`.
    Real,
}

/// A Kubernetes API, the fake ECR Public, and the operator's client for both.
pub struct Env {
    /// The objects, as a test reads and writes them.
    pub k8s: Kube,
    pub ecr: FakeEcrPublic,
    /// The namespace for the test's namespaced objects: `default` on the emulator, a fresh one
    /// on a real server.
    pub ns: String,
    backend: Backend,
}

enum Backend {
    Emulated(ApiServer),
    Real {
        cp: &'static ControlPlane,
        operator: kube::Client,
        admin: kube::Client,
        _turn: tokio::sync::OwnedMutexGuard<()>,
    },
}

impl Env {
    /// The emulator with both CRDs installed, and the fake ECR Public.
    pub async fn start() -> Env {
        let api = ApiServer::start()
            .await
            .expect("start Kubernetes API emulator");
        let k8s = api.state();
        for crd in [
            EcrPublicPullSecret::crd(),
            ClusterEcrPublicPullSecret::crd(),
        ] {
            let crd = serde_json::to_value(crd).expect("CRD to JSON");
            k8s.install_crd(crd).expect("install CRD");
        }
        let ecr = FakeEcrPublic::start().await.expect("start fake ECR Public");
        Env {
            k8s: Kube::Emulated(k8s),
            ecr,
            ns: "default".into(),
            backend: Backend::Emulated(api),
        }
    }

    /// The given API.
    pub async fn start_on(api: Api) -> Env {
        match api {
            Api::Emulator => Env::start().await,
            Api::Real => Env::start_real().await,
        }
    }

    /// The real control plane (started on first use in this process), with both CRDs applied
    /// and established, leftovers of earlier tests removed, and a fresh namespace.
    pub async fn start_real() -> Env {
        // One test at a time: a cluster-wide operator would serve the others' resources.
        static TURN: std::sync::OnceLock<Arc<tokio::sync::Mutex<()>>> = std::sync::OnceLock::new();
        let turn = TURN.get_or_init(Arc::default).clone().lock_owned().await;
        let cp = tokio::task::spawn_blocking(ControlPlane::shared)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        let admin = cp.client(User::Admin).await;
        let operator = cp.client(User::Operator).await;
        real::apply_crds(&admin).await;
        real::remove_leftovers(&admin).await;
        let real = Real::new(admin.clone(), cp.audit_log())
            .await
            .expect("mirror of the real API server");
        let k8s = Kube::Real(Arc::new(real));
        let ns = format!("t-{:08x}", fastrand::u32(..));
        k8s.create_namespace(&ns, &[(TEST_NAMESPACE_LABEL, "true")])
            .await;
        let ecr = FakeEcrPublic::start().await.expect("start fake ECR Public");
        Env {
            k8s,
            ecr,
            ns,
            backend: Backend::Real {
                cp,
                operator,
                admin,
                _turn: turn,
            },
        }
    }

    /// Which API this is.
    pub fn api(&self) -> Api {
        match self.backend {
            Backend::Emulated(_) => Api::Emulator,
            Backend::Real { .. } => Api::Real,
        }
    }

    /// The emulator, for tests that inject faults or reach into its state directly.
    pub fn emulator(&self) -> &Emulator {
        self.k8s
            .emulator()
            .expect("this test needs the in-repo API emulator")
    }

    /// The real control plane, when this is one.
    pub fn control_plane(&self) -> Option<&'static ControlPlane> {
        match self.backend {
            Backend::Real { cp, .. } => Some(cp),
            Backend::Emulated(_) => None,
        }
    }

    /// The API server's URL.
    pub fn url(&self) -> String {
        match &self.backend {
            Backend::Emulated(api) => api.url(),
            Backend::Real { cp, .. } => cp.url().to_string(),
        }
    }

    /// A kubeconfig for the operator's identity, as a pod's environment would give it.
    pub fn kubeconfig_yaml(&self, namespace: &str) -> String {
        match &self.backend {
            Backend::Emulated(api) => api.kubeconfig_yaml(namespace),
            Backend::Real { cp, .. } => cp.kubeconfig(User::Operator, namespace),
        }
    }

    /// The operator's kube client, exactly as the binary builds it from a kubeconfig.
    pub fn client(&self) -> kube::Client {
        match &self.backend {
            Backend::Emulated(api) => {
                let mut config = kube::Config::new(api.url().parse().expect("emulator URL"));
                ecr_public_pull_secret_operator::run::no_client_retries(&mut config);
                kube::Client::try_from(config).expect("kube client")
            }
            Backend::Real { operator, .. } => operator.clone(),
        }
    }

    /// A client for the test's own requests: an administrator, not the operator.
    pub fn admin_client(&self) -> kube::Client {
        match &self.backend {
            Backend::Emulated(_) => self.client(),
            Backend::Real { admin, .. } => admin.clone(),
        }
    }

    /// AWS config with static test credentials, a non-us-east-1 home region (the ECR Public
    /// client must pin us-east-1 itself) and the fake ECR Public as endpoint.
    pub fn sdk_config(&self) -> SdkConfig {
        sdk_config_for(&self.ecr.url(), "AKIDOPERATOR")
    }

    /// Creates an EcrPublicPullSecret from a JSON spec, as `kubectl apply` would.
    pub async fn create_cr(
        &self,
        namespace: &str,
        name: &str,
        spec: serde_json::Value,
    ) -> serde_json::Value {
        let obj = json!({
            "apiVersion": "ecrpublic.pullsecrets.dev/v1alpha1",
            "kind": "EcrPublicPullSecret",
            "metadata": {"name": name, "namespace": namespace},
            "spec": spec,
        });
        self.k8s
            .create(CRS, Some(namespace), obj)
            .await
            .unwrap_or_else(|e| panic!("create CR {namespace}/{name}: {e}"))
    }

    /// Creates a namespace for the test (labelled so that a real server's next test removes it).
    pub async fn create_namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let mut labels = labels.to_vec();
        if self.k8s.is_real() {
            labels.push((TEST_NAMESPACE_LABEL, "true"));
        }
        self.k8s.create_namespace(name, &labels).await;
    }

    /// Waits for `cond`, re-checked on every change; panics with `what` on timeout.
    pub async fn wait(&self, what: &str, timeout: Duration, cond: impl Fn(&Kube) -> bool) {
        assert!(
            self.k8s.wait_until(timeout, cond).await,
            "timed out after {timeout:?} waiting for: {what}"
        );
    }
}

/// AWS config for tests: static credentials with the given access key id, fake endpoint.
pub fn sdk_config_for(endpoint: &str, access_key: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::from_static("eu-west-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            access_key,
            "test-secret",
            None,
            None,
            "test",
        )))
        .endpoint_url(endpoint)
        .retry_config(RetryConfig::standard().with_max_attempts(1))
        .timeout_config(
            TimeoutConfig::builder()
                .operation_timeout(Duration::from_secs(2))
                .build(),
        )
        .sleep_impl(aws_smithy_async::rt::sleep::default_async_sleep().expect("tokio sleep"))
        .time_source(aws_smithy_async::time::SystemTimeSource::new())
        .build()
}

/// Per-service endpoints, as `AWS_ENDPOINT_URL_<SERVICE>` gives them in a pod, without touching
/// this process's environment (tests run in parallel).
#[derive(Debug, Clone)]
pub struct Endpoints {
    pub ecr_public: String,
    /// Private ECR (`AWS_ENDPOINT_URL_ECR`), every region.
    pub ecr: String,
    pub sts: String,
}

impl aws_types::service_config::LoadServiceConfig for Endpoints {
    fn load_config(&self, key: aws_types::service_config::ServiceConfigKey<'_>) -> Option<String> {
        if key.env() != "AWS_ENDPOINT_URL" {
            return None;
        }
        match key.service_id() {
            "ECR PUBLIC" => Some(self.ecr_public.clone()),
            "ECR" => Some(self.ecr.clone()),
            "STS" => Some(self.sts.clone()),
            _ => None,
        }
    }
}

/// AWS config for identity tests: `credentials` as the operator's own identity, ECR Public and
/// STS at their own endpoints.
pub fn sdk_config_with(
    endpoints: Endpoints,
    credentials: impl aws_credential_types::provider::ProvideCredentials + 'static,
) -> SdkConfig {
    let mut builder = sdk_config_for("http://unused.invalid", "unused").into_builder();
    builder.set_endpoint_url(None);
    let attempt = AwsSettings::default().attempt_timeout();
    builder
        .service_config(endpoints)
        .credentials_provider(SharedCredentialsProvider::new(credentials))
        // An identity's first call also resolves its credentials: a TokenRequest to the API
        // server and an exchange with moto. On a loaded machine that outlasts
        // `sdk_config_for`'s 2 s, and a cut-off exchange is started again (a second STS call
        // where the tests count one), so identity tests get the operator's own bound: one attempt
        // with its default settings (10 s).
        .timeout_config(TimeoutConfig::builder().operation_timeout(attempt).build())
        .identity_cache(
            aws_config::identity::IdentityCache::lazy()
                .load_timeout(attempt)
                .build(),
        )
        .build()
}

/// Defines each listed scenario (`async fn name(api: Api)`, in the calling file) as two tests:
/// `emulator::name`, run by `cargo test`, and `real_api_server::name`, ignored unless asked for
/// with `cargo test -- --ignored real_api_server` after `tests/cluster/build.sh` (CI does both).
#[macro_export]
macro_rules! on_both_apis {
    ($($scenario:ident),* $(,)?) => {
        mod emulator {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario($crate::env::Api::Emulator).await
                }
            )*
        }
        mod real_api_server {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs the real control plane: tests/cluster/build.sh, then cargo test -- --ignored real_api_server"]
                async fn $scenario() {
                    super::$scenario($crate::env::Api::Real).await
                }
            )*
        }
    };
}
