package slurm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzImageFromFeatures feeds feature lists as slurmctld passes them: an
// image it returns is one Slurm can name and one the input asked for.
func FuzzImageFromFeatures(f *testing.F) {
	for _, s := range []string{"", "image=rocky9", "gpu,image=debian12.5", "image=a&image=b", "image=", "image=x;y", "IMAGE=x", "image==x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		img, err := ImageFromFeatures(in)
		if err != nil || img == "" {
			return
		}
		if !featureName.MatchString(ImageFeature + img) {
			t.Fatalf("%q: image %q is not a Slurm feature name", in, img)
		}
		if !strings.Contains(in, ImageFeature+img) {
			t.Fatalf("%q: image %q was not asked for", in, img)
		}
	})
}

// FuzzResumeFile feeds SLURM_RESUME_FILE contents to Resume: whatever the
// file holds, only nodes of the program's own argument are switched.
func FuzzResumeFile(f *testing.F) {
	for _, s := range []string{
		`{"jobs":[{"job_id":1,"nodes":"n1"}],"all_nodes":"n1"}`,
		`{"all_nodes_resume":"n[1-2]","jobs":[{"features":"image=rocky9","job_id":42,"nodes_resume":"n[1-2]"}]}`,
		`{"jobs":[{"features":"image=a,image=b","job_id":1,"nodes_resume":"x[1-999999]"}]}`,
		`{"jobs":[{"features":null}]}`, `[]`, `{`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		p, _, _ := programs(t, "n1", "n2")
		file := filepath.Join(t.TempDir(), "resume.json")
		if err := os.WriteFile(file, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		p.ResumeFile = file
		p.SetImage = func(_ context.Context, nodes []string, _ string) error {
			for _, n := range nodes {
				if n != "n1" {
					t.Fatalf("switched %s, not among the resumed nodes", n)
				}
			}
			return nil
		}
		_, _ = p.Resume(context.Background(), "n1")
	})
}
