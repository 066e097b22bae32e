{{/*
Chart name, overridable with nameOverride.
*/}}
{{- define "epps.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full name used for every resource: the release name when it already contains the chart name, so
`helm install ecr-public-pull-secret-operator ...` does not produce a doubled name. 63 characters is
the DNS label limit that Service names are held to.
*/}}
{{- define "epps.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart label value.
*/}}
{{- define "epps.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels on every resource.
*/}}
{{- define "epps.labels" -}}
helm.sh/chart: {{ include "epps.chart" . }}
{{ include "epps.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: {{ include "epps.name" . }}
{{- end }}

{{/*
Selector labels: stable across upgrades, because a Deployment's selector is immutable.
*/}}
{{- define "epps.selectorLabels" -}}
app.kubernetes.io/name: {{ include "epps.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Name of the ServiceAccount the operator runs as.
*/}}
{{- define "epps.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "epps.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
"true" when leader election is on: asked for, or forced by more than one replica because two
active replicas would both reconcile and write.
*/}}
{{- define "epps.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicaCount) 1) -}}
true
{{- else -}}
false
{{- end -}}
{{- end }}

{{/*
Name of the leader-election Lease.
*/}}
{{- define "epps.leaseName" -}}
{{- default (include "epps.fullname" .) .Values.leaderElection.leaseName }}
{{- end }}

{{/*
HTTP_ADDR: host and port of the admin server; an IPv6 host is bracketed.
*/}}
{{- define "epps.httpAddr" -}}
{{- $host := toString .Values.metrics.bindAddress }}
{{- if contains ":" $host }}
{{- printf "[%s]:%d" $host (int .Values.metrics.port) }}
{{- else }}
{{- printf "%s:%d" $host (int .Values.metrics.port) }}
{{- end }}
{{- end }}

{{/*
Image reference; the tag defaults to the appVersion so the binary matches the chart's CRD.
*/}}
{{- define "epps.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The operator's permissions, shared by the ClusterRole and the namespaced Role.
*/}}
{{- define "epps.rules" -}}
# Resources are read from the watch cache only: list and watch, no get.
- apiGroups: ["ecrpublic.pullsecrets.dev"]
  resources: ["ecrpublicpullsecrets"]
  verbs: ["list", "watch"]
- apiGroups: ["ecrpublic.pullsecrets.dev"]
  resources: ["ecrpublicpullsecrets/status"]
  verbs: ["patch"]
# Secrets are written with server-side apply (patch); deletion is left to the garbage collector
# through the ownerReference, so no delete (clusterPullSecrets adds it below).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- if .Values.identity.serviceAccountTokens }}
# spec.serviceAccountName: read the ServiceAccount's role annotation and request a short-lived
# token for it (exchanged with STS). No list/watch: only the named ServiceAccount is read.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["serviceaccounts/token"]
  verbs: ["create"]
{{- end }}
{{- if .Values.serviceAccountPatching.enabled }}
# serviceAccountPatching: watch ServiceAccounts and add or remove the operator's own entries in
# their imagePullSecrets with a JSON patch (read from the watch cache: no get).
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["list", "watch", "patch"]
{{- end }}
{{- if .Values.clusterPullSecrets.enabled }}
# clusterPullSecrets (cluster-wide only): the cluster kind (from the watch cache: no get) with its
# finalizer (patch) and status,
# the Namespaces its selectors pick from (metadata only), and delete on Secrets: the kind's Secrets
# have no namespaced owner to be collected with, so the operator removes them itself when a
# namespace leaves the selection or the resource is deleted.
- apiGroups: ["ecrpublic.pullsecrets.dev"]
  resources: ["clusterecrpublicpullsecrets"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["ecrpublic.pullsecrets.dev"]
  resources: ["clusterecrpublicpullsecrets/status"]
  verbs: ["patch"]
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["delete"]
{{- end }}
{{- if or .Values.clusterPullSecrets.enabled (include "epps.rulesSelectNamespaces" .) }}
# Namespaces (metadata only): the cluster kind's selectors pick from them, and role rules with a
# namespaceSelector read their labels.
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["list", "watch"]
{{- end }}
{{- end }}

{{/*
"true" when an identity.roleRules entry selects namespaces by label.
*/}}
{{- define "epps.rulesSelectNamespaces" -}}
{{- range .Values.identity.roleRules }}{{ if .namespaceSelector }}true{{ end }}{{ end }}
{{- end }}
