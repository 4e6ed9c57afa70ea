package wwboot

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFuzzScriptRunsEveryTarget: scripts/fuzz.sh -list names exactly the
// fuzz targets the Go parser finds in the repository (issue 11 item 8: the
// on-demand fuzzing must run every target).
func TestFuzzScriptRunsEveryTarget(t *testing.T) {
	var want []string
	fset := token.NewFileSet()
	require.NoError(t, filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".") && p != ".") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if ok && fn.Recv == nil && strings.HasPrefix(fn.Name.Name, "Fuzz") && fn.Type.Params.NumFields() == 1 {
				want = append(want, "./"+filepath.Dir(p)+" "+fn.Name.Name)
			}
		}
		return nil
	}))
	require.NotEmpty(t, want)

	out, err := exec.Command("scripts/fuzz.sh", "-list").CombinedOutput()
	require.NoError(t, err, "%s", out)
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	sort.Strings(want)
	sort.Strings(got)
	assert.Equal(t, want, got)
}

// TestFuzzScriptKeepsFinds: the script fuzzes with a short minimize time,
// fails when a target fails, and leaves the failing input as a seed under
// testdata/fuzz, listed for committing. It runs on a scratch module with one
// target that fails on the first mutated input.
func TestFuzzScriptKeepsFinds(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a fuzz target")
	}
	dir := t.TempDir()
	script, err := os.ReadFile("scripts/fuzz.sh")
	require.NoError(t, err)
	for p, s := range map[string]string{
		"go.mod":          "module fuzzcheck\n\ngo 1.26\n",
		"scripts/fuzz.sh": string(script),
		"boom/boom_test.go": "package boom\n\nimport \"testing\"\n\n" +
			"func FuzzBoom(f *testing.F) {\n\tf.Add(\"seed\")\n\tf.Fuzz(func(t *testing.T, s string) {\n" +
			"\t\tif s != \"seed\" {\n\t\t\tt.Fatalf(\"boom %q\", s)\n\t\t}\n\t})\n}\n",
		"calm/calm_test.go": "package calm\n\nimport \"testing\"\n\n" +
			"func FuzzCalm(f *testing.F) {\n\tf.Fuzz(func(t *testing.T, b []byte) {})\n}\n",
	} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, p), []byte(s), 0o755))
	}
	git := exec.Command("git", "init", "-q", dir)
	require.NoError(t, git.Run())

	cmd := exec.Command(filepath.Join(dir, "scripts/fuzz.sh"))
	cmd.Env = append(os.Environ(), "FUZZTIME=2s", "GOFLAGS=-mod=mod")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", out)
	assert.Equal(t, 1, ee.ExitCode(), "%s", out)
	text := string(out)
	assert.Contains(t, text, "=== ./boom FuzzBoom (fuzztime 2s, minimize 10x)")
	assert.Contains(t, text, "=== ./calm FuzzCalm", "every target runs, also after a failure")
	assert.Contains(t, text, "2 targets, 1 failed")
	seeds, err := filepath.Glob(filepath.Join(dir, "boom/testdata/fuzz/FuzzBoom/*"))
	require.NoError(t, err)
	require.Len(t, seeds, 1, "%s", out)
	assert.Contains(t, text, "boom/testdata/fuzz/FuzzBoom/"+filepath.Base(seeds[0]), "the new seed is listed")
}
