//! Command line and environment. Every flag can also be set through the environment variable named
//! in its help, which is how the Helm chart configures the operator.

use std::{net::SocketAddr, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    aws::{
        AwsSettings,
        permissions::{RolePattern, RolePermissions, RoleRules, parse_role_rules},
    },
    controller, duration,
    k8s::leader::LeaseSettings,
};

/// Keeps Amazon ECR Public image pull Secrets fresh.
#[derive(Debug, Parser)]
#[command(
    name = "ecr-public-pull-secret-operator",
    version,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Flags of `run`, accepted without the subcommand too (`run` is the default).
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator (the default).
    Run(Box<RunArgs>),
    /// Print both CustomResourceDefinitions as YAML, or write them into a directory.
    Crd {
        /// Write `<plural>.<group>.yaml` files into this directory instead of printing.
        #[arg(long)]
        write: Option<std::path::PathBuf>,
    },
    /// Check the AWS side from inside the operator's pod: which credential source is used, the
    /// caller identity, and whether GetAuthorizationToken succeeds. Exits non-zero on failure.
    Token(TokenArgs),
}

/// Flags of `token`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// Assume this role from the operator's identity first, as spec.roleArn does.
    #[arg(long)]
    pub role_arn: Option<String>,

    /// Also print the token. It is a secret: do not paste it anywhere.
    #[arg(long)]
    pub show_token: bool,

    /// Also check private ECR's GetAuthorizationToken in this region (repeatable), as
    /// spec.privateRegistries does.
    #[arg(long = "private-region", value_name = "REGION")]
    pub private_regions: Vec<String>,

    /// Bound on one AWS operation including its retries.
    #[arg(long, env = "AWS_OPERATION_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub aws_operation_timeout: Duration,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    duration::parse(s)
}

fn parse_role_pattern(s: &str) -> Result<RolePattern, String> {
    s.parse()
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Only watch EcrPublicPullSecrets and Secrets in this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub watch_namespace: Option<String>,

    /// Serve ClusterEcrPublicPullSecrets. Needs cluster-wide access to Namespaces and Secret
    /// deletion (chart value clusterPullSecrets.enabled); ignored with --watch-namespace.
    #[arg(long, env = "CLUSTER_PULL_SECRETS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub cluster_pull_secrets: bool,

    /// Add Secrets to the `imagePullSecrets` of the ServiceAccounts resources name in
    /// spec.serviceAccounts. Needs ServiceAccount list/watch/patch (chart value
    /// serviceAccountPatching.enabled).
    #[arg(long, env = "PATCH_SERVICE_ACCOUNTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub patch_service_accounts: bool,

    /// Publish a Normal `Rotated` Event on every routine rotation. Off by default: at scale these
    /// are one Event per resource per rotation (the first write, a rewrite for a changed spec and
    /// a recovery always get one).
    #[arg(long, env = "ROTATION_EVENTS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub rotation_events: bool,

    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Log filter in tracing's EnvFilter syntax.
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    /// Refresh margin for resources without spec.refreshBefore (default: half the token lifetime).
    #[arg(long, env = "DEFAULT_REFRESH_BEFORE", value_parser = parse_duration)]
    pub default_refresh_before: Option<Duration>,

    /// Reconciles running at once.
    #[arg(long, env = "CONCURRENCY", default_value_t = 16)]
    pub concurrency: u16,

    /// First retry delay after a failure (doubles per attempt, with jitter).
    #[arg(long, env = "RETRY_BACKOFF_BASE", value_parser = parse_duration, default_value = "1s")]
    pub retry_backoff_base: Duration,

    /// Longest retry delay after failures.
    #[arg(long, env = "RETRY_BACKOFF_MAX", value_parser = parse_duration, default_value = "5m")]
    pub retry_backoff_max: Duration,

    /// Longest wait for the Kubernetes API server's answer to one request (watches aside); 0
    /// waits for ever. A request lost to a silent network then fails and is retried on a new
    /// connection instead of holding its reconcile.
    #[arg(long, env = "API_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub api_request_timeout: Duration,

    /// How long one watch request lasts (the API server's timeoutSeconds); a watch that has
    /// sent nothing for this long plus 5 s is taken for dead and started again, so a silent
    /// network delays the watches at most this long after it recovers.
    #[arg(long, env = "WATCH_TIMEOUT", value_parser = parse_duration, default_value = "60s")]
    pub watch_timeout: Duration,

    /// `/livez` fails once a reconcile has been running this long: the process is wedged, and
    /// the kubelet should restart it. Well above what a reconcile needs with the request and AWS
    /// timeouts.
    #[arg(long, env = "STALL_TIMEOUT", value_parser = parse_duration, default_value = "5m")]
    pub stall_timeout: Duration,

    /// Connect timeout for AWS calls.
    #[arg(long, env = "AWS_CONNECT_TIMEOUT", value_parser = parse_duration, default_value = "5s")]
    pub aws_connect_timeout: Duration,

    /// Refresh AWS credentials (IRSA, Pod Identity, assumed roles) this long before they expire.
    #[arg(long, env = "AWS_CREDENTIALS_REFRESH_BEFORE", value_parser = parse_duration, default_value = "5m")]
    pub aws_credentials_refresh_before: Duration,

    /// Role ARN patterns that resources in every namespace may ask for with spec.roleArn or
    /// spec.serviceAccountName, comma-separated. `{namespace}` stands for the resource's own
    /// namespace (`arn:aws:iam::123456789012:role/ecr-public-{namespace}`); `*` matches within one
    /// segment of the role's path and name. Empty: no per-resource roles but those of
    /// --role-rules.
    #[arg(long, env = "ALLOWED_ROLE_ARNS", value_delimiter = ',', value_parser = parse_role_pattern)]
    pub allowed_role_arns: Vec<RolePattern>,

    /// Role ARN patterns for some namespaces only, as a JSON list of rules:
    /// `[{"namespaces": ["team-a"], "namespaceSelector": {"matchLabels": {"tier": "prod"}},
    /// "roleArns": ["arn:aws:iam::123456789012:role/prod-puller"]}]`. A rule applies to the
    /// namespaces it names and those its selector matches (which makes the operator watch
    /// Namespaces).
    #[arg(long, env = "ROLE_RULES", value_parser = parse_role_rules, default_value = "[]")]
    pub role_rules: RoleRules,

    /// Role ARN patterns that ClusterEcrPublicPullSecrets may ask for with spec.roleArn,
    /// comma-separated. Empty: cluster resources use the operator's own identity.
    #[arg(long, env = "CLUSTER_ALLOWED_ROLE_ARNS", value_delimiter = ',', value_parser = parse_role_pattern)]
    pub cluster_allowed_role_arns: Vec<RolePattern>,

    /// Distinct IAM identities (roles, ServiceAccounts) the resources of one namespace may use;
    /// more report TooManyIdentities. Each identity costs memory and AWS calls.
    #[arg(long, env = "MAX_IDENTITIES_PER_NAMESPACE", default_value_t = 10)]
    pub max_identities_per_namespace: usize,

    /// Bound on one AWS operation including its retries.
    #[arg(long, env = "AWS_OPERATION_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub aws_operation_timeout: Duration,

    /// Attempts per AWS operation (SDK standard retry mode).
    #[arg(long, env = "AWS_MAX_ATTEMPTS", default_value_t = 3)]
    pub aws_max_attempts: u32,

    /// This instance's name in Events and its leader-election identity (the chart sets the pod name).
    #[arg(long, env = "POD_NAME")]
    pub pod_name: Option<String>,

    /// Namespace the operator runs in (the chart sets it from the downward API); default Lease namespace.
    #[arg(long, env = "POD_NAMESPACE")]
    pub pod_namespace: Option<String>,

    /// Address of the admin server (/metrics, /livez, /readyz).
    #[arg(long, env = "HTTP_ADDR", default_value = "0.0.0.0:8080")]
    pub http_addr: SocketAddr,

    /// Run only while holding a Lease, so several replicas can run safely.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "LEASE_NAME",
        default_value = "ecr-public-pull-secret-operator"
    )]
    pub lease_name: String,

    /// Namespace of the Lease (default: --pod-namespace, else "default").
    #[arg(long, env = "LEASE_NAMESPACE")]
    pub lease_namespace: Option<String>,

    /// How long a Lease stays valid without renewal; a follower takes over after at most this long.
    #[arg(long, env = "LEASE_DURATION", value_parser = parse_duration, default_value = "15s")]
    pub lease_duration: Duration,
}

impl RunArgs {
    /// Settings for the AWS clients.
    pub fn aws(&self) -> AwsSettings {
        AwsSettings {
            connect_timeout: self.aws_connect_timeout,
            operation_timeout: self.aws_operation_timeout,
            max_attempts: self.aws_max_attempts,
            credentials_refresh_before: self.aws_credentials_refresh_before,
        }
    }

    /// Which roles resources may use; an error names the flag that is wrong.
    pub fn role_permissions(&self) -> Result<RolePermissions, String> {
        let permissions = RolePermissions::new(
            self.allowed_role_arns.clone(),
            self.role_rules.0.clone(),
            self.cluster_allowed_role_arns.clone(),
        )?;
        if self.watch_namespace.is_some() && permissions.selects_by_label() {
            return Err(
                "--role-rules with a namespaceSelector needs cluster-wide list/watch on \
                        Namespaces, which --watch-namespace rules out: name the namespaces in \
                        the rule instead"
                    .into(),
            );
        }
        Ok(permissions)
    }

    /// Settings for the reconcilers.
    pub fn controller_settings(&self) -> Result<controller::Settings, String> {
        Ok(controller::Settings {
            watch_namespace: self.watch_namespace.clone(),
            default_refresh_before: self.default_refresh_before,
            backoff_base: self.retry_backoff_base,
            backoff_max: self.retry_backoff_max,
            concurrency: self.concurrency,
            instance: self.pod_name.clone(),
            role_permissions: self.role_permissions()?,
            max_identities_per_namespace: self.max_identities_per_namespace,
            patch_service_accounts: self.patch_service_accounts,
            rotation_events: self.rotation_events,
            watch_timeout: self.watch_timeout,
        })
    }
}

impl RunArgs {
    /// Lease settings when leader election is on.
    pub fn lease(&self) -> Option<LeaseSettings> {
        self.leader_election.then(|| LeaseSettings {
            name: self.lease_name.clone(),
            namespace: self
                .lease_namespace
                .clone()
                .or_else(|| self.pod_namespace.clone())
                .unwrap_or_else(|| "default".into()),
            identity: self
                .pod_name
                .clone()
                .unwrap_or_else(|| format!("{:016x}", fastrand::u64(..))),
            duration: self.lease_duration,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn run_is_the_default_and_flags_parse() {
        let cli = Cli::try_parse_from([
            "op",
            "--watch-namespace",
            "team-a",
            "--retry-backoff-base",
            "250ms",
        ])
        .unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.run.watch_namespace.as_deref(), Some("team-a"));
        assert_eq!(cli.run.retry_backoff_base, Duration::from_millis(250));
        let cli = Cli::try_parse_from(["op", "token", "--role-arn", "arn:x"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::Token(t)) if t.role_arn.as_deref() == Some("arn:x") && !t.show_token)
        );
        let cli = Cli::try_parse_from(["op", "crd"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Crd { write: None })));
        assert!(Cli::try_parse_from(["op", "--retry-backoff-base", "soon"]).is_err());
        assert!(cli.run.lease().is_none());
        let cli =
            Cli::try_parse_from(["op", "--leader-election", "--pod-namespace", "ops"]).unwrap();
        assert_eq!(cli.run.lease().unwrap().namespace, "ops");
        let cli = Cli::try_parse_from(["op", "--leader-election", "false"]).unwrap();
        assert!(!cli.run.leader_election);
    }

    #[test]
    fn role_permissions_are_checked_before_the_operator_starts() {
        let role = "arn:aws:iam::123456789012:role/ecr-public-{namespace}";
        let cli = Cli::try_parse_from(["op", "--allowed-role-arns", role]).unwrap();
        let permissions = cli.run.role_permissions().unwrap();
        assert!(permissions.shared_patterns().next().is_none());
        assert_eq!(cli.run.max_identities_per_namespace, 10);
        let err = Cli::try_parse_from(["op", "--allowed-role-arns", "arn:aws:iam::*:role/x"]);
        assert!(
            err.unwrap_err()
                .to_string()
                .contains("must name one account")
        );
        let rules = r#"[{"namespaceSelector": {"matchLabels": {"tier": "prod"}},
                        "roleArns": ["arn:aws:iam::123456789012:role/prod"]}]"#;
        let cli = Cli::try_parse_from(["op", "--role-rules", rules]).unwrap();
        assert!(cli.run.role_permissions().unwrap().selects_by_label());
        let cli =
            Cli::try_parse_from(["op", "--role-rules", rules, "--watch-namespace", "a"]).unwrap();
        assert!(
            cli.run
                .role_permissions()
                .unwrap_err()
                .contains("--watch-namespace")
        );
        let cluster = ["op", "--cluster-allowed-role-arns", role];
        let cli = Cli::try_parse_from(cluster).unwrap();
        assert!(
            cli.run.controller_settings().is_err(),
            "no {{namespace}} for the cluster kind"
        );
    }
}
