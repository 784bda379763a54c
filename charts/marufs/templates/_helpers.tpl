{{/* Names and labels shared by every template of the marufs chart. */}}

{{- define "marufs.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "marufs.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "marufs.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "marufs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: marufs
{{- end -}}

{{- define "marufs.selectorLabels" -}}
app.kubernetes.io/name: {{ include "marufs.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "marufs.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag }}
{{- end -}}

{{- define "marufs.operatorServiceAccount" -}}
{{- default (printf "%s-operator" (include "marufs.fullname" .)) .Values.serviceAccount.operatorName -}}
{{- end -}}

{{- define "marufs.nodeServiceAccount" -}}
{{- default (printf "%s-node" (include "marufs.fullname" .)) .Values.serviceAccount.nodeName -}}
{{- end -}}

{{/* The CSI socket kubelet dials: <kubeletDir>/plugins/csi.marufs.io/csi.sock */}}
{{- define "marufs.csiSocketDir" -}}
{{ .Values.node.kubeletDir }}/plugins/csi.marufs.io
{{- end -}}

{{/* StorageClass grants {sa: perms} → "sa=perms,…" (sorted, as the operator parses it). */}}
{{- define "marufs.grants" -}}
{{- $out := list -}}
{{- range $sa, $perms := . -}}
{{- $out = append $out (printf "%s=%s" $sa $perms) -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}
