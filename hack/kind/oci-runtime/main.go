// Command hpchub-runc is an OCI runtime wrapper registered with dockerd on machines where
// `docker run --privileged` fails with "unable to apply caps: operation not permitted"
// (the VM's capability bounding set lacks CAP_SYS_RESOURCE) or with rlimit errors.
//
// For `create`/`run` it rewrites the bundle's config.json, for `exec` the --process JSON
// file: capabilities outside the wrapper's own bounding set (CapBnd in /proc/self/status)
// are dropped and rlimits are clamped to the current hard limits. Then it execs the real
// runc with the unchanged argument list. For a container that asks only for what the
// machine can grant (every unprivileged container) the rewrite changes nothing.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capNames maps Linux capability numbers to the names OCI specs use.
var capNames = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
	"CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
	"CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

var rlimitNums = map[string]int{
	"RLIMIT_CPU": 0, "RLIMIT_FSIZE": 1, "RLIMIT_DATA": 2, "RLIMIT_STACK": 3,
	"RLIMIT_CORE": 4, "RLIMIT_RSS": 5, "RLIMIT_NPROC": 6, "RLIMIT_NOFILE": 7,
	"RLIMIT_MEMLOCK": 8, "RLIMIT_AS": 9, "RLIMIT_LOCKS": 10, "RLIMIT_SIGPENDING": 11,
	"RLIMIT_MSGQUEUE": 12, "RLIMIT_NICE": 13, "RLIMIT_RTPRIO": 14, "RLIMIT_RTTIME": 15,
}

// allowedCaps returns the capability names present in this process's bounding set.
func allowedCaps() (map[string]bool, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if !strings.HasPrefix(line, "CapBnd:") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(strings.TrimPrefix(line, "CapBnd:")), 16, 64)
		if err != nil {
			return nil, err
		}
		ok := map[string]bool{}
		for i, n := range capNames {
			if mask&(1<<uint(i)) != 0 {
				ok[n] = true
			}
		}
		return ok, nil
	}
	return nil, fmt.Errorf("no CapBnd in /proc/self/status")
}

func filterCaps(caps map[string]any, ok map[string]bool) {
	for set, v := range caps {
		list, isList := v.([]any)
		if !isList {
			continue
		}
		kept := []any{}
		for _, c := range list {
			if name, _ := c.(string); ok[name] {
				kept = append(kept, c)
			}
		}
		caps[set] = kept
	}
}

func clampRlimits(rl []any) {
	for _, e := range rl {
		m, isMap := e.(map[string]any)
		if !isMap {
			continue
		}
		typ, _ := m["type"].(string)
		num, known := rlimitNums[typ]
		if !known {
			continue
		}
		var cur syscall.Rlimit
		if syscall.Getrlimit(num, &cur) != nil {
			continue
		}
		for _, k := range []string{"hard", "soft"} {
			n, isNum := m[k].(json.Number)
			if !isNum {
				continue
			}
			if v, err := strconv.ParseUint(n.String(), 10, 64); err == nil && v > cur.Max {
				m[k] = cur.Max
			}
		}
	}
}

// fixProcess edits an OCI "process" object in place.
func fixProcess(p map[string]any, ok map[string]bool) {
	if caps, isMap := p["capabilities"].(map[string]any); isMap {
		filterCaps(caps, ok)
	}
	if rl, isList := p["rlimits"].([]any); isList {
		clampRlimits(rl)
	}
}

func rewrite(path string, isBundleConfig bool, ok map[string]bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	// UseNumber keeps 64-bit values (e.g. unlimited rlimits) exact through the round trip.
	var doc map[string]any
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return err
	}
	if isBundleConfig {
		if p, isMap := doc["process"].(map[string]any); isMap {
			fixProcess(p, ok)
		}
	} else {
		fixProcess(doc, ok)
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return os.WriteFile(path, out, st.Mode().Perm())
}

// flagValue finds "--name X", "--name=X" or "-short X" after index start.
func flagValue(args []string, start int, long, short string) (string, bool) {
	for i := start; i < len(args); i++ {
		a := args[i]
		if (a == long || (short != "" && a == short)) && i+1 < len(args) {
			return args[i+1], true
		}
		if strings.HasPrefix(a, long+"=") {
			return strings.TrimPrefix(a, long+"="), true
		}
	}
	return "", false
}

func realRunc() string {
	if p := os.Getenv("HPCHUB_REAL_RUNC"); p != "" {
		return p
	}
	for _, p := range []string{"/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc", "/usr/local/bin/runc"} {
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p
		}
	}
	if p, err := exec.LookPath("runc"); err == nil {
		return p
	}
	return "runc"
}

func main() {
	args := os.Args[1:]
	// The subcommand is the first argument that is not a global flag or its value.
	globalWithValue := map[string]bool{"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true}
	cmdIdx := -1
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") {
			if globalWithValue[a] {
				i++
			}
			continue
		}
		cmdIdx = i
		break
	}
	if cmdIdx >= 0 {
		ok, err := allowedCaps()
		if err == nil {
			switch args[cmdIdx] {
			case "create", "run":
				bundle, found := flagValue(args, cmdIdx+1, "--bundle", "-b")
				if !found {
					bundle, _ = os.Getwd()
				}
				err = rewrite(filepath.Join(bundle, "config.json"), true, ok)
			case "exec":
				if proc, found := flagValue(args, cmdIdx+1, "--process", "-p"); found {
					err = rewrite(proc, false, ok)
				}
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "hpchub-runc: %v (passing through unchanged)\n", err)
		}
	}
	runc := realRunc()
	if err := syscall.Exec(runc, append([]string{runc}, args...), os.Environ()); err != nil {
		fmt.Fprintf(os.Stderr, "hpchub-runc: exec %s: %v\n", runc, err)
		os.Exit(127)
	}
}
