{{- /*
  Every resource name of the chart comes from here; templates never build names
  themselves, so renaming a resource is one edit. Names are kept short enough that the
  longest suffix still fits Kubernetes' 63-character limit.
*/}}
{{- define "hpchub.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hpchub.hub.fullname" -}}{{ include "hpchub.fullname" . }}-hub{{- end -}}
{{- define "hpchub.hub-config.fullname" -}}{{ include "hpchub.fullname" . }}-hub-config{{- end -}}
{{- define "hpchub.hub-secret.fullname" -}}{{ include "hpchub.fullname" . }}-hub-secret{{- end -}}
{{- /* The Secret holding the hub's tokens and keys: the operator's (hub.existingSecret) or the chart's. */}}
{{- define "hpchub.hub-tokens.fullname" -}}{{ .Values.hub.existingSecret | default (include "hpchub.hub-secret.fullname" .) }}{{- end -}}
{{- define "hpchub.hub-files.fullname" -}}{{ include "hpchub.fullname" . }}-hub-files{{- end -}}
{{- define "hpchub.hub-templates.fullname" -}}{{ include "hpchub.fullname" . }}-hub-templates{{- end -}}
{{- define "hpchub.hub-db.fullname" -}}{{ include "hpchub.fullname" . }}-hub-db{{- end -}}
{{- define "hpchub.hub-connect.fullname" -}}{{ include "hpchub.fullname" . }}-hub-connect{{- end -}}
{{- define "hpchub.ssh-ca.fullname" -}}
{{- .Values.sshCA.existingSecret | default (printf "%s-ssh-ca" (include "hpchub.fullname" .)) -}}
{{- end -}}
{{- define "hpchub.sshproxy-ca.fullname" -}}{{ include "hpchub.fullname" . }}-sshproxy-ca{{- end -}}
{{- define "hpchub.ssh-ca-public.fullname" -}}{{ include "hpchub.fullname" . }}-ssh-ca-public{{- end -}}
{{- define "hpchub.proxy.fullname" -}}{{ include "hpchub.fullname" . }}-proxy{{- end -}}
{{- define "hpchub.proxy-api.fullname" -}}{{ include "hpchub.fullname" . }}-proxy-api{{- end -}}
{{- define "hpchub.proxy-public.fullname" -}}{{ include "hpchub.fullname" . }}-proxy-public{{- end -}}
{{- define "hpchub.uninstall.fullname" -}}{{ include "hpchub.fullname" . }}-stop-servers{{- end -}}
{{- define "hpchub.spin.fullname" -}}{{ include "hpchub.fullname" . }}-spin{{- end -}}
{{- define "hpchub.ingress.fullname" -}}{{ include "hpchub.fullname" . }}{{- end -}}

{{- /* The computed names the hub needs, passed in its values file under _internal. */}}
{{- define "hpchub.names" -}}
hub: {{ include "hpchub.hub.fullname" . }}
proxy: {{ include "hpchub.proxy.fullname" . }}
proxyApi: {{ include "hpchub.proxy-api.fullname" . }}
proxyPublic: {{ include "hpchub.proxy-public.fullname" . }}
hubSecret: {{ include "hpchub.hub-secret.fullname" . }}
{{- end -}}
