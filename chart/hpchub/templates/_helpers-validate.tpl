{{- /*
  Checks the schema cannot express (references between keys). Each failure starts with
  its rule id (HPCHUB-Rnnn), names the key and says what to write instead; run from the
  hub Secret so every install and upgrade goes through it. The hub's loader refuses the
  same values with the same id and words (hpchub/valuerules.py and the modules it
  names); tests/chart/rules.yaml lists every id with a bad-values case that both must
  refuse (tests/chart/test_rule_parity.py), and docs/rules.md is generated from it.
*/}}
{{- define "hpchub.validate" -}}
{{- $levels := .Values.serviceLevels -}}
{{- if .Values.culling.enabled -}}
  {{- /* The shortest timeout any cell gets (hpchub/culling.py): its own, its level's, the global. */ -}}
  {{- $shortest := int .Values.culling.timeout -}}
  {{- $key := "culling.timeout" -}}
  {{- range $sys, $s := .Values.systems -}}
    {{- range $lvl, $cell := $s.levels -}}
      {{- $t := int $.Values.culling.timeout -}}
      {{- $k := "culling.timeout" -}}
      {{- with ((get $levels $lvl) | default dict).culling -}}
        {{- if hasKey . "timeout" -}}{{- $t = int .timeout -}}{{- $k = printf "serviceLevels.%s.culling.timeout" $lvl -}}{{- end -}}
      {{- end -}}
      {{- with ($cell | default dict).culling -}}
        {{- if hasKey . "timeout" -}}{{- $t = int .timeout -}}{{- $k = printf "systems.%s.levels.%s.culling.timeout" $sys $lvl -}}{{- end -}}
      {{- end -}}
      {{- if lt $t $shortest -}}{{- $shortest = $t -}}{{- $key = $k -}}{{- end -}}
    {{- end -}}
  {{- end -}}
  {{- $activity := int (.Values.hub.activityIntervalSeconds | default 600) -}}
  {{- if gt (mul $activity 2) $shortest -}}
    {{- fail (printf "HPCHUB-R001 hub.activityIntervalSeconds: activity up to %d s old is too stale for %s %d (a server in use could be culled); keep it at most half the shortest culling timeout" $activity $key $shortest) -}}
  {{- end -}}
{{- end -}}
{{- range $sys, $s := .Values.systems -}}
  {{- with (($s.singleuser | default dict).portRange) -}}
    {{- if gt (int (.min | default 1024)) (int (.max | default 65535)) -}}
      {{- fail (printf "HPCHUB-R002 systems.%s.singleuser.portRange: min %v is above max %v, so every notebook's port would be refused; set min <= max" $sys (.min | default 1024) (.max | default 65535)) -}}
    {{- end -}}
  {{- end -}}
  {{- range $lvl, $cell := $s.levels -}}
    {{- if not (hasKey $levels $lvl) -}}
      {{- fail (printf "HPCHUB-R003 systems.%s.levels.%s: unknown service level %q; define it under serviceLevels or use one of: %s" $sys $lvl $lvl (keys $levels | sortAlpha | join ", ")) -}}
    {{- end -}}
    {{- if and (ne $cell.backend "kubernetes") (not $s.ssh) -}}
      {{- fail (printf "HPCHUB-R004 systems.%s.levels.%s.backend: %q needs systems.%s.ssh (login hosts and knownHosts)" $sys $lvl $cell.backend $sys) -}}
    {{- end -}}
    {{- if and (eq $cell.backend "slurm") $cell.slurm $cell.slurm.partition -}}
      {{- $parts := ($s.slurm | default dict).partitions | default dict -}}
      {{- if not (hasKey $parts $cell.slurm.partition) -}}
        {{- fail (printf "HPCHUB-R005 systems.%s.levels.%s.slurm.partition: %q is not under systems.%s.slurm.partitions (%s)" $sys $lvl $cell.slurm.partition $sys (keys $parts | sortAlpha | join ", ")) -}}
      {{- end -}}
    {{- end -}}
    {{- if and (eq $cell.backend "slurm") (not (($s.slurm | default dict).partitions)) -}}
      {{- fail (printf "HPCHUB-R006 systems.%s.levels.%s.backend: slurm needs systems.%s.slurm.partitions" $sys $lvl $sys) -}}
    {{- end -}}
    {{- if eq $cell.backend "slurm" -}}
      {{- include "hpchub.validateSlurmLimits" (dict "sys" $sys "lvl" $lvl "system" $s "cell" $cell) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- with (.Values.console | default dict).defaultCell -}}
  {{- $cells := list -}}
  {{- range $sys, $s := $.Values.systems -}}
    {{- range $lvl, $_ := $s.levels -}}{{- $cells = append $cells (printf "%s-%s" $sys $lvl) -}}{{- end -}}
  {{- end -}}
  {{- if not (has . $cells) -}}
    {{- fail (printf "HPCHUB-R007 console.defaultCell: %q is not a cell; use <system>-<level> of a systems.<system>.levels.<level>: %s" . ($cells | sortAlpha | join ", ")) -}}
  {{- end -}}
{{- end -}}
{{- $cb := .Values.hub.connectBack -}}
{{- if and (ne $cb.type "ClusterIP") (not $cb.host) -}}
  {{- fail (printf "HPCHUB-R008 hub.connectBack.host: required when hub.connectBack.type is %s (the name or address login and compute nodes use to reach the hub API)" $cb.type) -}}
{{- end -}}
{{- /*
  Systems the hub reaches over SSH (backends ssh and slurm): their notebooks must be able
  to call the hub API back, and the hub's NetworkPolicy must let it reach their login nodes.
*/}}
{{- range $sys, $s := .Values.systems -}}
  {{- $remote := list -}}
  {{- range $lvl, $cell := $s.levels -}}
    {{- if ne $cell.backend "kubernetes" -}}{{- $remote = append $remote (printf "%s (%s)" $lvl $cell.backend) -}}{{- end -}}
  {{- end -}}
  {{- if $remote -}}
    {{- $tunnel := and $s.ssh $s.ssh.tunnel -}}
    {{- if and (eq $cb.type "ClusterIP") (not $tunnel) -}}
      {{- fail (printf "HPCHUB-R009 hub.connectBack.type: ClusterIP cannot work for systems.%s (levels %s): notebooks on its login and compute nodes could not reach the hub API. Set hub.connectBack.type to NodePort, LoadBalancer or Ingress (with hub.connectBack.host), or use SSH tunnel mode (systems.%s.ssh.tunnel: true)" $sys (join ", " $remote) $sys) -}}
    {{- end -}}
    {{- if and $.Values.hub.networkPolicy.enabled (not $.Values.hpcNetwork.cidrs) (not $.Values.hub.networkPolicy.extraEgress) -}}
      {{- fail (printf "HPCHUB-R010 hpcNetwork.cidrs: empty, so the hub's NetworkPolicy allows no SSH to the login nodes of systems.%s (levels %s). List the networks of its login and compute nodes (or allow them in hub.networkPolicy.extraEgress)" $sys (join ", " $remote)) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- if eq .Values.auth.type "oauth" -}}
  {{- $o := .Values.auth.oauth -}}
  {{- range $k := list "clientId" "authorizeUrl" "tokenUrl" "userdataUrl" "callbackUrl" -}}
    {{- if not (index $o $k) -}}
      {{- fail (printf "HPCHUB-R011 auth.oauth.%s: required with auth.type=oauth (to try the chart without an identity provider, set auth.type=dummy and auth.dummy.password)" $k) -}}
    {{- end -}}
  {{- end -}}
  {{- if not (or $o.clientSecret $o.existingSecret) -}}
    {{- fail "HPCHUB-R012 auth.oauth.existingSecret: required with auth.type=oauth (a Secret with key client-secret), or set auth.oauth.clientSecret" -}}
  {{- end -}}
{{- end -}}
{{- if eq .Values.auth.type "sshproxy" -}}
  {{- $s := .Values.auth.sshproxy -}}
  {{- if not $s.url -}}
    {{- fail "HPCHUB-R013 auth.sshproxy.url: required with auth.type=sshproxy (the key-issuing API)" -}}
  {{- end -}}
  {{- if not (hasPrefix "https://" $s.url) -}}
    {{- fail (printf "HPCHUB-R014 auth.sshproxy.url: %q must be an https:// URL (the hub sends users' passwords and one-time passwords there); for a certificate from your own CA set auth.sshproxy.caBundle" $s.url) -}}
  {{- end -}}
  {{- if and $s.caBundle (not (contains "-----BEGIN CERTIFICATE-----" $s.caBundle)) -}}
    {{- fail "HPCHUB-R015 auth.sshproxy.caBundle: expected the PEM text of the CA certificate(s) (-----BEGIN CERTIFICATE-----), not a file path; pass the file with --set-file auth.sshproxy.caBundle=site-ca.pem" -}}
  {{- end -}}
{{- end -}}
{{- $np := .Values.hub.networkPolicy -}}
{{- $idp := ($np.egressAllowRules | default dict).identityProvider | default dict -}}
{{- if and $np.enabled (has .Values.auth.type (list "oauth" "sshproxy")) (not (or $idp.cidrs $idp.nonPrivateIPs $np.extraEgress)) -}}
  {{- $url := ternary (printf "auth.oauth.tokenUrl %s" .Values.auth.oauth.tokenUrl) (printf "auth.sshproxy.url %s" .Values.auth.sshproxy.url) (eq .Values.auth.type "oauth") -}}
  {{- fail (printf "HPCHUB-R016 hub.networkPolicy.egressAllowRules.identityProvider.cidrs: empty, so the hub's NetworkPolicy allows no connection to the identity provider (%s) and nobody could sign in. List its addresses (e.g. [192.0.2.0/28]; on identityProvider.ports, default 443), or set identityProvider.nonPrivateIPs: true for a provider whose addresses change (any public address on those ports)" $url) -}}
{{- end -}}
{{- if and .Values.sshCA.enabled (not .Values.sshCA.sourceAddresses) -}}
  {{- fail "HPCHUB-R017 sshCA.sourceAddresses: empty, so a certificate copied off the hub would log in from anywhere. List the hub's egress addresses as the login nodes see them (the cluster nodes' or NAT addresses, e.g. [10.100.8.0/24]), or [0.0.0.0/0, \"::/0\"] to accept certificates from any address explicitly" -}}
{{- end -}}
{{- range $sys, $s := .Values.systems -}}
  {{- if and ($s.status | default dict).user (not $.Values.sshCA.enabled) -}}
    {{- fail (printf "HPCHUB-R018 systems.%s.status.user: the status account's certificate is signed by the hub's SSH CA; set sshCA.enabled: true (or leave status.user empty for per-user queries)" $sys) -}}
  {{- end -}}
{{- end -}}
{{- if and (eq .Values.auth.type "dummy") (not .Values.auth.dummy.password) -}}
  {{- fail "HPCHUB-R019 auth.dummy.password: required with auth.type=dummy" -}}
{{- end -}}
{{- if and (eq .Values.auth.type "dummy") .Values.hub.adminUsers (not .Values.auth.dummy.adminPassword) -}}
  {{- fail "HPCHUB-R020 auth.dummy.adminPassword: required with auth.type=dummy and hub.adminUsers (admins log in with it, 32+ characters; without it they cannot log in at all)" -}}
{{- end -}}
{{- if and (eq .Values.auth.type "dummy") .Values.auth.dummy.adminPassword (eq .Values.auth.dummy.adminPassword .Values.auth.dummy.password) -}}
  {{- fail "HPCHUB-R021 auth.dummy.adminPassword: must differ from auth.dummy.password" -}}
{{- end -}}
{{- include "hpchub.validateExtensions" . -}}
{{- $https := .Values.proxy.https -}}
{{- if $https.enabled -}}
  {{- if and (eq $https.type "secret") (not $https.secret.name) -}}
    {{- fail "HPCHUB-R022 proxy.https.secret.name: required with proxy.https.type=secret (a Secret with the TLS key and certificate, e.g. type kubernetes.io/tls)" -}}
  {{- end -}}
  {{- if .Values.ingress.enabled -}}
    {{- fail "HPCHUB-R023 proxy.https.enabled: the Ingress (ingress.enabled) is the public entry point and terminates TLS itself; set ingress.tlsSecretName instead, or turn the Ingress off" -}}
  {{- end -}}
  {{- if and (eq $https.type "secret") (eq .Values.proxy.service.type "NodePort") (not .Values.proxy.service.httpsNodePort) -}}
    {{- fail "HPCHUB-R024 proxy.service.httpsNodePort: required with proxy.https.type=secret and proxy.service.type=NodePort (plain HTTP redirects users to that port)" -}}
  {{- end -}}
{{- end -}}
{{- if .Values.hub.existingSecret -}}
  {{- range $key, $v := dict "hub.cookieSecret" .Values.hub.cookieSecret "hub.cryptKey" .Values.hub.cryptKey "proxy.secretToken" .Values.proxy.secretToken -}}
    {{- if $v -}}
      {{- fail (printf "HPCHUB-R025 %s: set together with hub.existingSecret (%s); put the value in that Secret instead (keys hub.cookie-secret, hub.crypt-key, proxy.token) and leave %s empty" $key $.Values.hub.existingSecret $key) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- if and (eq .Values.hub.db.type "postgres") (not .Values.hub.db.postgres.existingSecret) -}}
  {{- fail "HPCHUB-R026 hub.db.postgres.existingSecret: required with hub.db.type=postgres (a Secret holding the database URL)" -}}
{{- end -}}
{{- if and .Values.spin.defaultVersion (not (hasKey .Values.spin.versions .Values.spin.defaultVersion)) -}}
  {{- fail (printf "HPCHUB-R027 spin.defaultVersion: %q is not a key of spin.versions" .Values.spin.defaultVersion) -}}
{{- end -}}
{{- include "hpchub.validateIdentity" . -}}
{{- include "hpchub.validateExtend" . -}}
{{- /* Last: a user's SSH key comes from the sign-in (sshproxy) or the hub's CA (chart only: tests/chart/rules.yaml says why). */ -}}
{{- if and (ne .Values.auth.type "sshproxy") (not .Values.sshCA.enabled) -}}
  {{- range $sys, $s := .Values.systems -}}
    {{- $remote := list -}}
    {{- range $lvl, $cell := $s.levels -}}
      {{- if ne $cell.backend "kubernetes" -}}{{- $remote = append $remote (printf "%s (%s)" $lvl $cell.backend) -}}{{- end -}}
    {{- end -}}
    {{- if $remote -}}
      {{- fail (printf "HPCHUB-R057 sshCA.enabled: auth.type=%s gives the hub no SSH key for a user, so systems.%s (levels %s) could never start a server; enable the hub's SSH CA (sshCA.enabled: true, with the login nodes trusting it) or use auth.type=sshproxy (keys from the site's key service)" $.Values.auth.type $sys (join ", " $remote)) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- end -}}

{{- /*
  Extend (systems.<s>.slurm.extend): its account and cap, and caps only on Slurm levels.
  The hub's loader (hpchub/settings.py ExtendSettings, hpchub/grid.py) checks the same.
*/}}
{{- define "hpchub.validateExtend" -}}
{{- range $sys, $s := .Values.systems -}}
  {{- $ext := (($s.slurm | default dict).extend | default dict) -}}
  {{- if $ext.enabled -}}
    {{- if not $ext.user -}}
      {{- fail (printf "HPCHUB-R053 systems.%s.slurm.extend.user: required with systems.%s.slurm.extend.enabled (the site account that runs scontrol)" $sys $sys) -}}
    {{- end -}}
    {{- if not $ext.maxTime -}}
      {{- fail (printf "HPCHUB-R054 systems.%s.slurm.extend.maxTime: required with systems.%s.slurm.extend.enabled (the longest time limit a job may be extended to)" $sys $sys) -}}
    {{- end -}}
    {{- if not $.Values.sshCA.enabled -}}
      {{- fail (printf "HPCHUB-R055 systems.%s.slurm.extend.enabled: the extend account's certificate is signed by the hub's SSH CA; set sshCA.enabled: true" $sys) -}}
    {{- end -}}
  {{- end -}}
  {{- range $lvl, $cell := $s.levels -}}
    {{- if and $cell.extend (ne $cell.backend "slurm") -}}
      {{- fail (printf "HPCHUB-R056 systems.%s.levels.%s.extend: only batch levels (a job's time limit) can be extended" $sys $lvl) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- end -}}

{{- /*
  Users' uid/gid (identity) and what depends on them: the removed Spin keys, the lookup's
  system and service account, and Spin volumes that need a trusted uid source. The hub's
  loader (hpchub/config.py _identity) checks the same for a hub configured without Helm.
*/}}
{{- define "hpchub.validateIdentity" -}}
{{- $spin := .Values.spin -}}
{{- if hasKey $spin "uidLookup" -}}
  {{- fail "HPCHUB-R028 spin.uidLookup: removed (it ran `id` as the user, whose shell start-up files can print any uid); set identity.lookup.system and identity.lookup.user (a service account on the login nodes, see the operator guide)" -}}
{{- end -}}
{{- if hasKey $spin "uidFromAuthState" -}}
  {{- fail "HPCHUB-R029 spin.uidFromAuthState: removed; set identity.fromAuthState.uid and .gid to the auth_state keys that hold them (e.g. uid and gid for the key service, oauth_user.uidNumber for an OIDC claim)" -}}
{{- end -}}
{{- $id := .Values.identity | default dict -}}
{{- $claims := $id.fromAuthState | default dict -}}
{{- $lookup := $id.lookup | default dict -}}
{{- if ne (empty $claims.uid) (empty $claims.gid) -}}
  {{- fail "HPCHUB-R030 identity.fromAuthState: set both uid and gid (the auth_state keys that hold them), or neither" -}}
{{- end -}}
{{- if $lookup.system -}}
  {{- $sys := index (.Values.systems | default dict) $lookup.system -}}
  {{- if not (and $sys $sys.ssh) -}}
    {{- fail (printf "HPCHUB-R031 identity.lookup.system: %q is not a system with ssh settings under systems" $lookup.system) -}}
  {{- end -}}
  {{- if not $lookup.user -}}
    {{- fail "HPCHUB-R032 identity.lookup.user: required with identity.lookup.system (the site's service account on its login nodes)" -}}
  {{- end -}}
  {{- if not .Values.sshCA.enabled -}}
    {{- fail "HPCHUB-R033 identity.lookup: needs sshCA.enabled (the hub signs the service account's certificate)" -}}
  {{- end -}}
{{- end -}}
{{- if not (or $claims.uid $lookup.system) -}}
  {{- range $name, $vol := $spin.volumes -}}
    {{- if not (or (hasKey $vol "configMap") (hasKey $vol "secret") (hasKey $vol "emptyDir")) -}}
      {{- if contains "{username}" (toJson $vol) -}}
        {{- fail (printf "HPCHUB-R034 spin.volumes.%s: a per-user ({username}) file system needs a trusted uid source, or every Spin user would run as spin.uid on it: set identity.lookup (system + service account) or identity.fromAuthState (uid/gid keys)" $name) -}}
      {{- end -}}
      {{- if not $vol.readOnly -}}
        {{- fail (printf "HPCHUB-R035 spin.volumes.%s: a writable file system needs a trusted uid source, or every Spin user would share spin.uid on it: set identity.lookup or identity.fromAuthState, or make it readOnly" $name) -}}
      {{- end -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- end -}}

{{- /*
  A Slurm cell's settings against its partition's limits, as the options validator applies
  them at every start (level values over systems.<s>.slurm.defaults; no partition means
  Slurm's default one, held to the loosest limit of any partition). A cell outside them
  could never start; refuse it here, naming the key the value came from.
  Arguments (a dict): sys, lvl (names), system, cell (their values).
*/}}
{{- define "hpchub.validateSlurmLimits" -}}
{{- $slurm := .system.slurm | default dict -}}
{{- $parts := $slurm.partitions | default dict -}}
{{- $defaults := $slurm.defaults | default dict -}}
{{- $fixed := .cell.slurm | default dict -}}
{{- $from := dict -}}
{{- range $k := list "partition" "qos" "constraint" "nodes" "time" "gpus" -}}
  {{- if hasKey $fixed $k -}}
    {{- $_ := set $from $k (printf "systems.%s.levels.%s.slurm.%s" $.sys $.lvl $k) -}}
  {{- else if hasKey $defaults $k -}}
    {{- $_ := set $from $k (printf "systems.%s.slurm.defaults.%s" $.sys $k) -}}
  {{- end -}}
{{- end -}}
{{- $eff := merge (deepCopy $fixed) $defaults -}}
{{- if and (hasKey $defaults "partition") (not (hasKey $parts $defaults.partition)) -}}
  {{- fail (printf "HPCHUB-R036 systems.%s.slurm.defaults.partition: %q is not under systems.%s.slurm.partitions (%s)" .sys $defaults.partition .sys (keys $parts | sortAlpha | join ", ")) -}}
{{- end -}}
{{- range $k, $list := dict "qos" ($slurm.qos | default list) "constraint" ($slurm.constraints | default list) -}}
  {{- if and (hasKey $eff $k) $list (not (has (index $eff $k) $list)) -}}
    {{- fail (printf "HPCHUB-R037 %s: %q is not in systems.%s.slurm.%s (%s)" (index $from $k) (index $eff $k) $.sys (ternary "qos" "constraints" (eq $k "qos")) ($list | join ", ")) -}}
  {{- end -}}
{{- end -}}
{{- /* The limits: the partition's, else the loosest of all partitions. */ -}}
{{- $limits := dict -}}
{{- $which := "" -}}
{{- $detail := "" -}}
{{- if hasKey $eff "partition" -}}
  {{- $limits = index $parts $eff.partition | default dict -}}
  {{- $which = printf "partition %q" $eff.partition -}}
  {{- $detail = printf "systems.%s.slurm.partitions.%s.%%s is %%v" .sys $eff.partition -}}
{{- else -}}
  {{- range $name, $p := $parts -}}
    {{- $p = $p | default dict -}}
    {{- range $k := list "maxNodes" "maxGpus" -}}
      {{- if and (hasKey $p $k) (or (not (hasKey $limits $k)) (gt (int (index $p $k)) (int (index $limits $k)))) -}}
        {{- $_ := set $limits $k (index $p $k) -}}
      {{- end -}}
    {{- end -}}
    {{- if and $p.maxTime (or (not $limits.maxTime) (gt (int (include "hpchub.slurmSeconds" $p.maxTime)) (int (include "hpchub.slurmSeconds" $limits.maxTime)))) -}}
      {{- $_ := set $limits "maxTime" $p.maxTime -}}
    {{- end -}}
  {{- end -}}
  {{- $which = "any partition" -}}
  {{- $detail = printf "no partition is set, so Slurm picks one; the largest %%s under systems.%s.slurm.partitions is %%v" .sys -}}
{{- end -}}
{{- range $k, $max := dict "nodes" "maxNodes" "gpus" "maxGpus" -}}
  {{- if and (hasKey $eff $k) (hasKey $limits $max) (gt (int (index $eff $k)) (int (index $limits $max))) -}}
    {{- fail (printf "HPCHUB-R038 %s: %v is more than %s allows (%s)" (index $from $k) (index $eff $k) $which (printf $detail $max (index $limits $max))) -}}
  {{- end -}}
{{- end -}}
{{- if and (hasKey $eff "time") $limits.maxTime (gt (int (include "hpchub.slurmSeconds" $eff.time)) (int (include "hpchub.slurmSeconds" $limits.maxTime))) -}}
  {{- fail (printf "HPCHUB-R039 %s: %s is longer than %s allows (%s)" $from.time $eff.time $which (printf $detail "maxTime" $limits.maxTime)) -}}
{{- end -}}
{{- end -}}

{{- /*
  Seconds in a Slurm time limit of the schema's forms ([D-]HH:MM:SS, MM:SS, D-HH:MM), read
  as sbatch --time reads them (and as hpchub/options.py parse_slurm_time does).
*/}}
{{- define "hpchub.slurmSeconds" -}}
{{- $t := toString . -}}
{{- $days := 0 -}}
{{- if contains "-" $t -}}
  {{- $d := splitn "-" 2 $t -}}
  {{- $days = atoi $d._0 -}}
  {{- $t = $d._1 -}}
{{- end -}}
{{- $n := list -}}
{{- range splitList ":" $t -}}{{- $n = append $n (atoi .) -}}{{- end -}}
{{- if $days -}}
  {{- $n = concat $n (list 0 0) -}}
  {{- add (mul $days 86400) (mul (index $n 0) 3600) (mul (index $n 1) 60) (index $n 2) -}}
{{- else if eq (len $n) 3 -}}
  {{- add (mul (index $n 0) 3600) (mul (index $n 1) 60) (index $n 2) -}}
{{- else if eq (len $n) 2 -}}
  {{- add (mul (index $n 0) 60) (index $n 1) -}}
{{- else -}}
  {{- mul (index $n 0) 60 -}}
{{- end -}}
{{- end -}}


{{- /* The z2jh-style extension points (hub.config, hub.services, hub.extraEnv, hub.extraFiles). */}}
{{- define "hpchub.validateExtensions" -}}
{{- $hub := .Values.hub -}}
{{- range $class, $traits := $hub.config -}}
  {{- if not (regexMatch "^[A-Z][A-Za-z0-9_]*$" $class) -}}
    {{- fail (printf "HPCHUB-R040 hub.config.%s: not a configurable class name (they start with an upper-case letter: JupyterHub, Spawner, GenericOAuthenticator...); misplaced config? (hub.loadRoles and hub.services are keys of their own)" $class) -}}
  {{- end -}}
  {{- range $trait, $_ := $traits -}}
    {{- $key := printf "hub.config.%s.%s" $class $trait -}}
    {{- if and (eq $class "JupyterHub") (has $trait (list "services" "load_roles")) -}}
      {{- fail (printf "HPCHUB-R041 %s: use hub.%s instead (the chart adds its own services and roles, which this would replace)" $key (ternary "services" "loadRoles" (eq $trait "services"))) -}}
    {{- end -}}
    {{- if regexMatch "(?i)(secret|token|password|passwd|keys?)$" $trait -}}
      {{- fail (printf "HPCHUB-R042 %s: looks like a secret, and hub.config is written to the hub's values file. Put it in a Secret, pass it with hub.extraEnv (valueFrom.secretKeyRef) and set the trait in hub.extraConfig from os.environ (the cookie secret, auth_state key and proxy token: hub.existingSecret)" $key) -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- $serviceNames := dict -}}
{{- range $key, $svc := $hub.services -}}
  {{- $name := $svc.name | default $key -}}
  {{- if has $name (list "idle-culler" "uninstall" "metrics") -}}
    {{- fail (printf "HPCHUB-R043 hub.services.%s: the chart runs a service named %s itself; choose another name" $key $name) -}}
  {{- end -}}
  {{- if hasKey $serviceNames $name -}}
    {{- fail (printf "HPCHUB-R044 hub.services.%s: service name %s is also hub.services.%s's" $key $name (get $serviceNames $name)) -}}
  {{- end -}}
  {{- $_ := set $serviceNames $name $key -}}
  {{- if hasKey $svc "api_token" -}}
    {{- fail (printf "HPCHUB-R045 hub.services.%s.api_token: use hub.services.%s.apiToken (kept in a Secret, never in the hub's values file), or leave it empty to have one derived" $key $key) -}}
  {{- end -}}
  {{- /* The token itself is never printed: this message reaches CI logs. */ -}}
  {{- if and $svc.apiToken (not (regexMatch "^[A-Za-z0-9._~+/=-]{32,64}$" (toString $svc.apiToken))) -}}
    {{- fail (printf "HPCHUB-R046 hub.services.%s.apiToken: must be 32 to 64 characters: letters, digits and - _ . ~ + / = (z2jh takes any string; JupyterHub never matches a token longer than 64, and a shorter one is weaker than the chart's own). Make one with openssl rand -hex 32 and give it to the service too, or leave apiToken empty to have one derived" $key) -}}
  {{- end -}}
{{- end -}}
{{- $roleNames := dict -}}
{{- range $key, $role := $hub.loadRoles -}}
  {{- $name := ($role | default dict).name | default $key -}}
  {{- if not (regexMatch "^[a-z][a-z0-9_~.-]{1,253}[a-z0-9]$" $name) -}}
    {{- fail (printf "HPCHUB-R047 hub.loadRoles.%s: %q is not a role name JupyterHub accepts (lowercase letters, digits and -_~., 3-255 characters, starting with a letter); set hub.loadRoles.%s.name" $key $name $key) -}}
  {{- end -}}
  {{- if hasKey $roleNames $name -}}
    {{- fail (printf "HPCHUB-R048 hub.loadRoles.%s: role name %s is also hub.loadRoles.%s's" $key $name (get $roleNames $name)) -}}
  {{- end -}}
  {{- $_ := set $roleNames $name $key -}}
{{- end -}}
{{- include "hpchub.validateExistingSecret" . -}}
{{- $chartEnv := list "PYTHONUNBUFFERED" "POD_IP" "JPY_COOKIE_SECRET" "JUPYTERHUB_CRYPT_KEY" "CONFIGPROXY_AUTH_TOKEN" -}}
{{- $names := list -}}
{{- if kindIs "map" $hub.extraEnv -}}{{- $names = keys $hub.extraEnv -}}{{- else -}}{{- range $hub.extraEnv -}}{{- $names = append $names .name -}}{{- end -}}{{- end -}}
{{- range $names -}}
  {{- if or (has . $chartEnv) (hasPrefix "HPCHUB_" .) -}}
    {{- fail (printf "HPCHUB-R049 hub.extraEnv.%s: set by the chart itself; overriding it would break the hub (configure what it carries through its own values)" .) -}}
  {{- end -}}
{{- end -}}
{{- range $name, $_ := .Values.console.templates -}}
  {{- if not (regexMatch "^[a-z0-9_-]+\\.html$" $name) -}}
    {{- fail (printf "HPCHUB-R050 console.templates.%s: not a template file name (e.g. login.html, home.html, page.html)" $name) -}}
  {{- end -}}
{{- end -}}
{{- range $key, $file := $hub.extraFiles -}}
  {{- $n := 0 -}}
  {{- range $k := list "stringData" "data" "binaryData" -}}{{- if hasKey $file $k -}}{{- $n = add1 $n -}}{{- end -}}{{- end -}}
  {{- if ne (int $n) 1 -}}
    {{- fail (printf "HPCHUB-R051 hub.extraFiles.%s: give exactly one of stringData, data or binaryData" $key) -}}
  {{- end -}}
  {{- if and (hasKey $file "data") (not (regexMatch "\\.(ya?ml|json|toml)$" $file.mountPath)) -}}
    {{- fail (printf "HPCHUB-R052 hub.extraFiles.%s.data: written as YAML, JSON or TOML by mountPath's extension, and %s has none of them; use stringData" $key $file.mountPath) -}}
  {{- end -}}
{{- end -}}
{{- end -}}


{{- /*
  hub.existingSecret, when helm can read it (install and upgrade; not `helm template` or a
  GitOps render, where the hub checks the same at start): every token the hub and proxy
  need, under hpchub's key or z2jh's, and a values.yaml that sets only what the hub reads.
  Values are never printed.
*/}}
{{- define "hpchub.validateExistingSecret" -}}
{{- $name := .Values.hub.existingSecret -}}
{{- if $name -}}
{{- $data := (lookup "v1" "Secret" .Release.Namespace $name).data | default dict -}}
{{- if $data -}}
  {{- $where := printf "hub.existingSecret (%s)" $name -}}
  {{- range $ours, $z2jh := dict "hub.cookie-secret" "hub.config.JupyterHub.cookie_secret" "hub.crypt-key" "hub.config.CryptKeeper.keys" "proxy.token" "hub.config.ConfigurableHTTPProxy.auth_token" -}}
    {{- if and (hasKey $data $ours) (hasKey $data $z2jh) (ne (b64dec (get $data $ours) | trim) (b64dec (get $data $z2jh) | trim)) -}}
      {{- fail (printf "%s: keys %s and %s (z2jh's name) differ; keep one of them" $where $ours $z2jh) -}}
    {{- end -}}
    {{- if not (or (get $data $ours) (get $data $z2jh)) -}}
      {{- fail (printf "%s: no key %s (or z2jh's name %s); add it: kubectl -n %s patch secret %s -p \"{\\\"stringData\\\": {\\\"%s\\\": \\\"$(openssl rand -hex 32)\\\"}}\"" $where $ours $z2jh $.Release.Namespace $name $ours) -}}
    {{- end -}}
  {{- end -}}
  {{- range $key, $svc := $.Values.hub.services -}}
    {{- $k := printf "hub.services.%s.apiToken" $key -}}
    {{- if not (or $svc.apiToken (get $data $k)) -}}
      {{- fail (printf "hub.services.%s: no API token: %s has no key %s and hub.services.%s.apiToken is not set; add the key: kubectl -n %s patch secret %s -p \"{\\\"stringData\\\": {\\\"%s\\\": \\\"$(openssl rand -hex 32)\\\"}}\"" $key $where $k $key $.Release.Namespace $name $k) -}}
    {{- end -}}
  {{- end -}}
  {{- with get $data "values.yaml" -}}
    {{- $overlay := b64dec . | fromYaml -}}
    {{- if hasKey $overlay "Error" -}}
      {{- fail (printf "%s: values.yaml is not YAML" $where) -}}
    {{- end -}}
    {{- range $top, $v := $overlay -}}
      {{- if eq $top "hub" -}}
        {{- range $k, $_ := $v -}}
          {{- if not (has $k (list "config" "extraConfig" "services" "loadRoles")) -}}
            {{- fail (printf "%s: values.yaml sets hub.%s, which the chart reads at install, not the hub; put it in your values file (a Secret's values.yaml may set hub.config, hub.extraConfig, hub.services, hub.loadRoles, custom)" $where $k) -}}
          {{- end -}}
        {{- end -}}
      {{- else if ne $top "custom" -}}
        {{- fail (printf "%s: values.yaml sets %s, which the chart reads at install, not the hub; put it in your values file (a Secret's values.yaml may set hub.config, hub.extraConfig, hub.services, hub.loadRoles, custom)" $where $top) -}}
      {{- end -}}
    {{- end -}}
  {{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
