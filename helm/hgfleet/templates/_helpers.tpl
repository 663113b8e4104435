{{/*
Names. Kubernetes names are limited to 63 characters (DNS labels).
*/}}
{{- define "hgfleet.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "hgfleet.fullname" -}}
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

{{- define "hgfleet.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Standard labels on every resource; selector labels are the stable subset.
*/}}
{{- define "hgfleet.labels" -}}
helm.sh/chart: {{ include "hgfleet.chart" . }}
{{ include "hgfleet.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: harborguard
{{- end }}

{{- define "hgfleet.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hgfleet.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
The daemon's pods. The component label keeps the migrate Job's pod out of the
Service, the PodDisruptionBudget and the NetworkPolicy.
*/}}
{{- define "hgfleet.serverSelectorLabels" -}}
{{ include "hgfleet.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "hgfleet.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "hgfleet.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "hgfleet.image" -}}
{{- printf "%s:%s" .Values.image.repository (toString (default .Chart.AppVersion .Values.image.tag)) }}
{{- end }}

{{/*
The four secrets the daemon reads: value name, environment variable, file
name (also the key in the chart's Secret).
*/}}
{{- define "hgfleet.secretSpecs" -}}
- value: databaseUrl
  env: HGFLEET_DATABASE_URL
  file: database-url
- value: webhookToken
  env: HGFLEET_WEBHOOK_TOKEN
  file: webhook-token
- value: adminToken
  env: HGFLEET_ADMIN_TOKEN
  file: admin-token
- value: masterKey
  env: HGFLEET_MASTER_KEY
  file: master-key
{{- end }}

{{/*
The configured secrets as a YAML list of {env, file, secretName, secretKey}:
an existingSecret reference wins over a value; unset items are left out.
Call with a dict {root, only}: `only` limits the list to one value name.
*/}}
{{- define "hgfleet.secretItems" -}}
{{- $root := .root }}
{{- $items := list }}
{{- range (include "hgfleet.secretSpecs" $root | fromYamlArray) }}
{{- if or (not $.only) (eq $.only .value) }}
{{- $ref := get $root.Values.existingSecret .value }}
{{- if $ref.name }}
{{- $items = append $items (dict "env" .env "file" .file "secretName" $ref.name "secretKey" (default .file $ref.key)) }}
{{- else if get $root.Values.secrets .value }}
{{- $items = append $items (dict "env" .env "file" .file "secretName" (include "hgfleet.fullname" $root) "secretKey" .file) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $items }}
{{- end }}

{{/*
Values the chart's own Secret holds (those without an existingSecret).
*/}}
{{- define "hgfleet.ownSecretData" -}}
{{- $root := . }}
{{- $data := dict }}
{{- range (include "hgfleet.secretSpecs" . | fromYamlArray) }}
{{- $ref := get $root.Values.existingSecret .value }}
{{- $val := get $root.Values.secrets .value }}
{{- if and $val (not $ref.name) }}
{{- $_ := set $data .file ($val | b64enc) }}
{{- end }}
{{- end }}
{{- toYaml $data }}
{{- end }}

{{- define "hgfleet.secretMountPath" -}}
/var/run/secrets/hgfleet
{{- end }}

{{/*
Environment and volumes that deliver secret items, as files (preferred) or
through secretKeyRef. Never a value inline. Call with {root, items}.
*/}}
{{- define "hgfleet.secretEnv" -}}
{{- range .items }}
{{- if $.root.Values.secretsAsFiles }}
- name: {{ .env }}_FILE
  value: {{ printf "%s/%s" (include "hgfleet.secretMountPath" $.root) .file | quote }}
{{- else }}
- name: {{ .env }}
  valueFrom:
    secretKeyRef:
      name: {{ .secretName | quote }}
      key: {{ .secretKey | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "hgfleet.secretVolume" -}}
{{- if and .root.Values.secretsAsFiles .items }}
- name: secrets
  projected:
    # 0440: readable by the pod's group (fsGroup) only.
    defaultMode: 288
    sources:
      {{- range .items }}
      - secret:
          name: {{ .secretName | quote }}
          items:
            - key: {{ .secretKey | quote }}
              path: {{ .file }}
      {{- end }}
{{- end }}
{{- end }}

{{- define "hgfleet.secretVolumeMount" -}}
{{- if and .root.Values.secretsAsFiles .items }}
- name: secrets
  mountPath: {{ include "hgfleet.secretMountPath" .root }}
  readOnly: true
{{- end }}
{{- end }}

{{/*
Common checks on values that the schema cannot express.
*/}}
{{- define "hgfleet.validate" -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- $irsa := index .Values.serviceAccount.annotations "eks.amazonaws.com/role-arn" }}
{{- if and .Values.aws.irsaRoleArn $irsa (ne $irsa .Values.aws.irsaRoleArn) }}
{{- fail "aws.irsaRoleArn and serviceAccount.annotations.eks.amazonaws.com/role-arn name different roles: set only one" }}
{{- end }}
{{- end }}
