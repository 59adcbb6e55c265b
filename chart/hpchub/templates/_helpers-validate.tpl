{{- /*
  Checks the schema cannot express (references between keys). Each failure names the
  key and says what to write instead; run from the hub Secret so every install and
  upgrade goes through it.
*/}}
{{- define "hpchub.validate" -}}
{{- $levels := .Values.serviceLevels -}}
{{- range $sys, $s := .Values.systems -}}
  {{- range $lvl, $cell := $s.levels -}}
    {{- if not (hasKey $levels $lvl) -}}
      {{- fail (printf "systems.%s.levels.%s: unknown service level %q; define it under serviceLevels or use one of: %s" $sys $lvl $lvl (keys $levels | sortAlpha | join ", ")) -}}
    {{- end -}}
    {{- if and (ne $cell.backend "kubernetes") (not $s.ssh) -}}
      {{- fail (printf "systems.%s.levels.%s.backend: %q needs systems.%s.ssh (login hosts and knownHosts)" $sys $lvl $cell.backend $sys) -}}
    {{- end -}}
    {{- if and (eq $cell.backend "slurm") $cell.slurm $cell.slurm.partition -}}
      {{- $parts := ($s.slurm | default dict).partitions | default dict -}}
      {{- if not (hasKey $parts $cell.slurm.partition) -}}
        {{- fail (printf "systems.%s.levels.%s.slurm.partition: %q is not under systems.%s.slurm.partitions (%s)" $sys $lvl $cell.slurm.partition $sys (keys $parts | sortAlpha | join ", ")) -}}
      {{- end -}}
    {{- end -}}
    {{- if and (eq $cell.backend "slurm") (not (($s.slurm | default dict).partitions)) -}}
      {{- fail (printf "systems.%s.levels.%s.backend: slurm needs systems.%s.slurm.partitions" $sys $lvl $sys) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- $cb := .Values.hub.connectBack -}}
{{- if and (ne $cb.type "ClusterIP") (not $cb.host) -}}
  {{- fail (printf "hub.connectBack.host: required when hub.connectBack.type is %s (the name or address login and compute nodes use to reach the hub API)" $cb.type) -}}
{{- end -}}
{{- if eq .Values.auth.type "oauth" -}}
  {{- $o := .Values.auth.oauth -}}
  {{- range $k := list "clientId" "authorizeUrl" "tokenUrl" "userdataUrl" "callbackUrl" -}}
    {{- if not (index $o $k) -}}
      {{- fail (printf "auth.oauth.%s: required with auth.type=oauth (to try the chart without an identity provider, set auth.type=dummy and auth.dummy.password)" $k) -}}
    {{- end -}}
  {{- end -}}
  {{- if not (or $o.clientSecret $o.existingSecret) -}}
    {{- fail "auth.oauth.existingSecret: required with auth.type=oauth (a Secret with key client-secret), or set auth.oauth.clientSecret" -}}
  {{- end -}}
{{- end -}}
{{- if and (eq .Values.auth.type "sshproxy") (not .Values.auth.sshproxy.url) -}}
  {{- fail "auth.sshproxy.url: required with auth.type=sshproxy (the key-issuing API)" -}}
{{- end -}}
{{- if and (eq .Values.auth.type "dummy") (not .Values.auth.dummy.password) -}}
  {{- fail "auth.dummy.password: required with auth.type=dummy" -}}
{{- end -}}
{{- if and (eq .Values.hub.db.type "postgres") (not .Values.hub.db.postgres.existingSecret) -}}
  {{- fail "hub.db.postgres.existingSecret: required with hub.db.type=postgres (a Secret holding the database URL)" -}}
{{- end -}}
{{- if and .Values.spin.defaultVersion (not (hasKey .Values.spin.versions .Values.spin.defaultVersion)) -}}
  {{- fail (printf "spin.defaultVersion: %q is not a key of spin.versions" .Values.spin.defaultVersion) -}}
{{- end -}}
{{- end -}}
