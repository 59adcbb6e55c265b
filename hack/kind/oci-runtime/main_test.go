package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestRewriteDropsCapsOutsideTheBoundingSetAndClampsRlimits(t *testing.T) {
	var nofile syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	// 18446744073709551615 (unlimited) must survive the round trip exactly.
	doc := `{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_SYS_RESOURCE"],"effective":["CAP_SYS_RESOURCE"]},
	  "rlimits":[{"type":"RLIMIT_NOFILE","hard":18446744073709551615,"soft":18446744073709551615}]},"ociVersion":"1.0.2"}`
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	allowed := map[string]bool{"CAP_CHOWN": true}
	if err := rewrite(cfg, true, allowed); err != nil {
		t.Fatal(err)
	}
	out, _ := os.ReadFile(cfg)
	if strings.Contains(string(out), "CAP_SYS_RESOURCE") {
		t.Errorf("CAP_SYS_RESOURCE kept: %s", out)
	}
	if !strings.Contains(string(out), "CAP_CHOWN") {
		t.Errorf("CAP_CHOWN dropped: %s", out)
	}
	var parsed struct {
		Process struct {
			Rlimits []struct {
				Hard uint64 `json:"hard"`
				Soft uint64 `json:"soft"`
			} `json:"rlimits"`
		} `json:"process"`
	}
	if err := json.Unmarshal(out, &parsed); err != nil {
		t.Fatalf("runc could not read the result: %v", err)
	}
	if got := parsed.Process.Rlimits[0].Hard; got > nofile.Max {
		t.Errorf("hard nofile %d above the current hard limit %d", got, nofile.Max)
	}
}

func TestUnprivilegedConfigIsUnchanged(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.json")
	doc := `{"process":{"capabilities":{"bounding":["CAP_CHOWN","CAP_KILL"]},"rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":1024}]}}`
	if err := os.WriteFile(cfg, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rewrite(cfg, true, map[string]bool{"CAP_CHOWN": true, "CAP_KILL": true}); err != nil {
		t.Fatal(err)
	}
	var before, after any
	out, _ := os.ReadFile(cfg)
	_ = json.Unmarshal([]byte(doc), &before)
	_ = json.Unmarshal(out, &after)
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if string(b1) != string(b2) {
		t.Errorf("changed:\n%s\n%s", b1, b2)
	}
}

func TestSubcommandFlagsAreFound(t *testing.T) {
	args := []string{"--root", "/r", "--log", "/l", "create", "--bundle", "/b", "--pid-file", "/p", "id"}
	if v, ok := flagValue(args, 5, "--bundle", "-b"); !ok || v != "/b" {
		t.Errorf("bundle = %q %v", v, ok)
	}
	if v, ok := flagValue([]string{"exec", "--process=/x.json", "id"}, 1, "--process", "-p"); !ok || v != "/x.json" {
		t.Errorf("process = %q %v", v, ok)
	}
}
