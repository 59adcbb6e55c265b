{{- /* Labels: one set for all resources, and selector labels per component. */}}
{{- define "hpchub.selectorLabels" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "hpchub.labels" -}}
{{ include "hpchub.selectorLabels" . }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{- /*
  A generated secret that survives upgrades (the z2jh pattern): the explicit value from
  values, else the value already in the cluster's Secret, else a fresh random one.
  Arguments (a dict): explicit (string), existing (the Secret's .data map, possibly empty),
  key (the key in .data), gen ("hex32" or "ed25519"). Returns the base64 data value.
*/}}
{{- define "hpchub.secretValue" -}}
{{- if .explicit -}}
{{- .explicit | b64enc -}}
{{- else if and .existing (hasKey .existing .key) (index .existing .key) -}}
{{- index .existing .key -}}
{{- else if eq .gen "ed25519" -}}
{{- genPrivateKey "ed25519" | b64enc -}}
{{- else -}}
{{- randAlphaNum 64 | sha256sum | b64enc -}}
{{- end -}}
{{- end -}}

{{- /*
  Pod and container security contexts of a component (its values: .Values.hub or
  .Values.proxy). The defaults in values.yaml are non-root, seccomp RuntimeDefault, no
  privilege escalation, read-only root, all capabilities dropped; the schema refuses root
  and privileged overrides.
*/}}
{{- define "hpchub.podSecurityContext" -}}
{{- toYaml .podSecurityContext -}}
{{- end -}}

{{- define "hpchub.containerSecurityContext" -}}
{{- toYaml .containerSecurityContext -}}
{{- end -}}

{{- /*
  Where a component's pods run (its values: .Values.hub or .Values.proxy): priority
  class, affinity, node selector and tolerations, each only when set. Every pod the chart
  makes takes it from here (the hub, the proxy, and the hub's uninstall hook with the
  hub's), so the same values place them the same way. Spin pods are KubeSpawner's
  (spin.nodeSelector, in the hub's loader).
*/}}
{{- define "hpchub.podScheduling" -}}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- /* The pull secrets of every pod the chart makes (imagePullSecrets: names or {name: ...}). */}}
{{- define "hpchub.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ kindIs "map" . | ternary (get (kindIs "map" . | ternary . dict) "name") . | quote }}
  {{- end }}
{{- end }}
{{- end -}}

{{- /*
  hub.extraEnv as a list of EnvVar: a map (NAME: value, or NAME: {valueFrom: ...}) in key
  order, or a list passed through (z2jh's two forms).
*/}}
{{- define "hpchub.extraEnv" -}}
{{- $env := list -}}
{{- if kindIs "map" . -}}
  {{- range $name := keys . | sortAlpha -}}
    {{- $v := index $ $name -}}
    {{- if kindIs "map" $v -}}
      {{- $env = append $env (merge (dict "name" $name) $v) -}}
    {{- else -}}
      {{- $env = append $env (dict "name" $name "value" (toString $v)) -}}
    {{- end -}}
  {{- end -}}
{{- else -}}
  {{- $env = . -}}
{{- end -}}
{{- with $env }}{{ toYaml . }}{{ end -}}
{{- end -}}

{{- /* Environment variable carrying the API token of hub.services.<name> to the hub. */}}
{{- define "hpchub.serviceTokenEnv" -}}
HPCHUB_SERVICE_TOKEN_{{ . | upper | replace "-" "_" }}
{{- end -}}

{{- /*
  A container's image and pull policy. Arguments (a dict): root (the top context), image
  (an image value). An empty tag is the chart's appVersion: Chart.yaml is the one place
  versions are bumped.
*/}}
{{- define "hpchub.image" -}}
image: {{ printf "%s:%s" .image.repository (include "hpchub.imageTag" .) | quote }}
imagePullPolicy: {{ .image.pullPolicy | default "IfNotPresent" }}
{{- end -}}

{{- define "hpchub.imageTag" -}}
{{- .image.tag | default .root.Chart.AppVersion -}}
{{- end -}}

{{- /* Non-empty when the sshproxy authenticator verifies its key service with caBundle. */}}
{{- define "hpchub.sshproxyCA" -}}
{{- if and (eq .Values.auth.type "sshproxy") .Values.auth.sshproxy.caBundle }}yes{{ end -}}
{{- end -}}

{{- /* Non-empty when any system uses SSH tunnel mode. */}}
{{- define "hpchub.anyTunnel" -}}
{{- range $name, $s := .Values.systems }}{{ if and $s.ssh $s.ssh.tunnel }}yes{{ end }}{{ end -}}
{{- end -}}


{{- /*
  The port users reach the proxy's HTTPS on, where plain HTTP redirects to: the https node
  port for a NodePort Service, else the Service's https port.
*/}}
{{- define "hpchub.proxy.httpsPublicPort" -}}
{{- $svc := .Values.proxy.service -}}
{{- if and (eq $svc.type "NodePort") $svc.httpsNodePort -}}
{{- $svc.httpsNodePort -}}
{{- else -}}
{{- $svc.httpsPort -}}
{{- end -}}
{{- end -}}
