{{- /*
  NetworkPolicy blocks shared by the hub, proxy and Spin policies. Every egress rule names
  its peers and its ports: nothing reaches "any address", and port 53 goes to the cluster's
  DNS only (docs/operator-guide.md, "Network requirements"; tests/chart/test_network_policy.py
  checks every rule).
*/}}

{{- /* NetworkPolicy peers for the HPC networks from values. */}}
{{- define "hpchub.hpcPeers" -}}
{{- range .Values.hpcNetwork.cidrs }}
- ipBlock:
    cidr: {{ . | quote }}
{{- end }}
{{- end -}}

{{- /* DNS to the cluster's DNS servers only (clusterDNS), never to any address. */}}
{{- define "hpchub.dnsEgress" -}}
{{- $dns := .Values.clusterDNS -}}
- ports:
    - {port: 53, protocol: UDP}
    - {port: 53, protocol: TCP}
  to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $dns.namespace }}
      podSelector:
        matchLabels:
          {{- toYaml $dns.podLabels | nindent 10 }}
    {{- range $dns.cidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
{{- end -}}

{{- /*
  NetworkPolicyPorts of a port range (a dict: min, max, protocol), leaving out 53: DNS goes
  to the cluster's DNS only, whatever range an operator writes.
*/}}
{{- define "hpchub.netpol.portRange" -}}
{{- $min := int .min -}}
{{- $max := int .max -}}
{{- $ranges := list (list $min $max) -}}
{{- if and (le $min 53) (ge $max 53) -}}
  {{- $ranges = list (list $min 52) (list 54 $max) -}}
{{- end -}}
{{- range $ranges -}}
  {{- $lo := index . 0 -}}
  {{- $hi := index . 1 -}}
  {{- if le $lo $hi }}
- port: {{ $lo }}
  {{- if lt $lo $hi }}
  endPort: {{ $hi }}
  {{- end }}
  protocol: {{ $.protocol }}
  {{- end -}}
{{- end -}}
{{- end -}}

{{- /*
  The HPC side's ports, as JSON {"ssh": [ports], "notebooks": ["min-max", ...]}: the SSH
  port of every system the hub logs in to (systems.<s>.ssh.port, default 22), and the
  notebook ports (singleuser.portRange, default 1024-65535) of every system with ssh or
  slurm levels outside tunnel mode (in tunnel mode notebooks are reached through the hub pod).
*/}}
{{- define "hpchub.netpol.hpcPorts" -}}
{{- $ssh := list -}}
{{- $notebooks := list -}}
{{- range $name, $s := .Values.systems -}}
  {{- if $s.ssh -}}
    {{- $ssh = append $ssh (int ($s.ssh.port | default 22)) -}}
  {{- end -}}
  {{- $remote := false -}}
  {{- range $lvl, $cell := $s.levels -}}
    {{- if ne $cell.backend "kubernetes" -}}{{- $remote = true -}}{{- end -}}
  {{- end -}}
  {{- if and $remote (not (and $s.ssh $s.ssh.tunnel)) -}}
    {{- $range := (($s.singleuser | default dict).portRange) | default dict -}}
    {{- $notebooks = append $notebooks (printf "%d-%d" (int ($range.min | default 1024)) (int ($range.max | default 65535))) -}}
  {{- end -}}
{{- end -}}
{{- dict "ssh" ($ssh | uniq | sortAlpha) "notebooks" ($notebooks | uniq | sortAlpha) | toJson -}}
{{- end -}}

{{- /* Egress rule: notebooks on login and compute nodes, on their systems' portRange. */}}
{{- define "hpchub.netpol.hpcNotebooks" -}}
{{- $ports := include "hpchub.netpol.hpcPorts" . | fromJson -}}
{{- if and .Values.hpcNetwork.cidrs $ports.notebooks }}
- ports:
    {{- range $ports.notebooks }}
    {{- $r := splitList "-" . }}
    {{- include "hpchub.netpol.portRange" (dict "min" (index $r 0) "max" (index $r 1) "protocol" "TCP") | trim | nindent 4 }}
    {{- end }}
  to:
    {{- include "hpchub.hpcPeers" $ | trim | nindent 4 }}
{{- end }}
{{- end -}}

{{- /* Egress rule: login nodes on their SSH port. */}}
{{- define "hpchub.netpol.hpcSSH" -}}
{{- $ports := include "hpchub.netpol.hpcPorts" . | fromJson -}}
{{- if and .Values.hpcNetwork.cidrs $ports.ssh }}
- ports:
    {{- range $ports.ssh }}
    - {port: {{ . }}, protocol: TCP}
    {{- end }}
  to:
    {{- include "hpchub.hpcPeers" $ | trim | nindent 4 }}
{{- end }}
{{- end -}}

{{- /*
  The Kubernetes API's endpoints (where kube-proxy sends kubernetes.default:443): listed in
  hub.networkPolicy.egressAllowRules.kubernetesAPI.cidrs, else looked up at install and
  upgrade from the `kubernetes` Service's EndpointSlice in namespace default. Under `helm
  template` (no cluster) the lookup finds nothing and no rule is rendered: the API stays
  closed, and NOTES.txt says which key to set.
*/}}
{{- define "hpchub.netpol.kubernetesAPIPeers" -}}
{{- $api := .Values.hub.networkPolicy.egressAllowRules.kubernetesAPI | default dict -}}
{{- if $api.cidrs -}}
{{- dict "cidrs" $api.cidrs "ports" ($api.ports | default (list 443 6443)) "source" "values" | toJson -}}
{{- else -}}
{{- $slice := (lookup "discovery.k8s.io/v1" "EndpointSlice" "default" "kubernetes") | default dict -}}
{{- $cidrs := list -}}
{{- range ($slice.endpoints | default list) -}}
  {{- range (.addresses | default list) -}}
    {{- $cidrs = append $cidrs (printf "%s/%s" . (ternary "128" "32" (contains ":" .))) -}}
  {{- end -}}
{{- end -}}
{{- $ports := list -}}
{{- range ($slice.ports | default list) -}}{{- $ports = append $ports (int .port) -}}{{- end -}}
{{- if and $cidrs $ports -}}
{{- dict "cidrs" $cidrs "ports" $ports "source" "lookup" | toJson -}}
{{- else -}}
{{- dict "cidrs" list "ports" list "source" "none" | toJson -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hpchub.netpol.kubernetesAPI" -}}
{{- $api := include "hpchub.netpol.kubernetesAPIPeers" . | fromJson -}}
{{- if $api.cidrs }}
- ports:
    {{- range $api.ports }}
    - {port: {{ int . }}, protocol: TCP}
    {{- end }}
  to:
    {{- range $api.cidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
{{- end }}
{{- end -}}

{{- /*
  The identity provider (auth.oauth's token and userinfo endpoints) or the key service
  (auth.sshproxy.url): its CIDRs on its ports, or with nonPrivateIPs any public address on
  those ports (z2jh's nonPrivateIPs, narrowed to the ports).
*/}}
{{- define "hpchub.netpol.identityProvider" -}}
{{- $idp := .Values.hub.networkPolicy.egressAllowRules.identityProvider | default dict -}}
{{- if or $idp.cidrs $idp.nonPrivateIPs }}
- ports:
    {{- range ($idp.ports | default (list 443)) }}
    - {port: {{ int . }}, protocol: TCP}
    {{- end }}
  to:
    {{- range $idp.cidrs }}
    - ipBlock:
        cidr: {{ . | quote }}
    {{- end }}
    {{- if $idp.nonPrivateIPs }}
    - ipBlock:
        cidr: 0.0.0.0/0
        # Private, link-local (cloud metadata) addresses are not the identity provider.
        except: [10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 169.254.0.0/16]
    - ipBlock:
        cidr: "::/0"
        except: ["fc00::/7", "fe80::/10"]
    {{- end }}
{{- end }}
{{- end -}}
