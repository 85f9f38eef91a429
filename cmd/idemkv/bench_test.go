package main

import (
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchCommand(t *testing.T) {
	dir := t.TempDir()
	svg := filepath.Join(dir, "chart.svg")
	code, out, errOut := runCmd(t, "bench", "-ops", "60", "-warmup", "50", "-c", "1,4", "-size", "300", "-durability", "relaxed",
		"-workload", "mixed", "-replay-ratio", "0.5", "-records", "100", "-chart", svg, "-dir", dir, "-quiet")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if !strings.Contains(out, "workload=mixed (replay 0.50, conflict 0.00)") || strings.Count(out, "\n") != 8 {
		t.Errorf("output:\n%s", out)
	}
	f, err := os.Open(svg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := xml.NewDecoder(f)
	for {
		if _, err := dec.Token(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("chart: %v", err)
		}
	}
}

func TestBenchCommandModes(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := runCmd(t, "bench", "-http", "-ops", "40", "-warmup", "30", "-c", "2", "-size", "300", "-durability", "relaxed",
		"-dir", dir, "-json")
	var v struct {
		Results []struct {
			System string `json:"system"`
		} `json:"results"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &v) != nil || len(v.Results) != 2 {
		t.Errorf("-http: exit %d, %d results; stderr %s, stdout:\n%s", code, len(v.Results), errOut, out)
	}
	code, out, errOut = runCmd(t, "bench", "-churn", "-ttl", "1s", "-duration", "500ms", "-c", "2", "-size", "300",
		"-durability", "relaxed", "-dir", dir, "-csv")
	if code != 0 || !strings.HasPrefix(out, "ttl_ns,") {
		t.Errorf("-churn: exit %d; stderr %s, stdout:\n%s", code, errOut, out)
	}
}

func TestBenchCommandUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-c", "0"},
		{"-c", "4,x"},
		{"-http", "-c", "1,2"},
		{"-churn", "-chart", "x.svg"},
		{"-http", "-churn"},
		{"-http", "-rate", "1000"},
		{"-churn", "-rate", "1000"},
		{"-churn", "-warmup", "10"},
		{"-ttl", "1s"},
		{"-csv", "-json"},
		{"extra"},
	} {
		if code, _, _ := runCmd(t, append([]string{"bench"}, args...)...); code != 2 {
			t.Errorf("bench %v: exit %d; want 2", args, code)
		}
	}
	if code, _, errOut := runCmd(t, "bench", "-replay-ratio", "0.5", "-ops", "10"); code != 1 || !strings.Contains(errOut, "mixed") {
		t.Errorf("-replay-ratio without -workload mixed: exit %d, %s", code, errOut)
	}
}
