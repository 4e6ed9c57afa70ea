package provision_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/Masterminds/sprig/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/ipxe"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
)

// TestWarewulfTemplate boots through a template written the Warewulf way
// (testdata/ipxe/warewulf-style.ipxe: Warewulf's variables and its
// /provision/MAC?assetkey=${asset}&uuid=${uuid}&stage=... URLs): every URL
// it fetches, with iPXE's settings expanded as iPXE would, is served.
func TestWarewulfTemplate(t *testing.T) {
	l := newLab(t)
	require.NoError(t, l.store.Update(context.Background(), func(c *nodedb.Config) error {
		c.Nodes["n1"].Ipxe = "warewulf-style"
		c.Nodes["n2"].Ipxe = "warewulf-style"
		return nil
	}))
	set, err := ipxe.New(ipxe.Options{Dir: "testdata/ipxe", Funcs: sprig.TxtFuncMap()})
	require.NoError(t, err)
	opts := l.options(t)
	opts.Scripts = set
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	defer ts.Close()

	for _, c := range []struct{ mac, asset string }{{mac1, ""}, {mac2, asset}} {
		resp, body := get(t, ts.URL+"/provision/"+c.mac+"?stage=ipxe&assetkey="+c.asset+"&uuid=u")
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
		script := string(body)
		assert.Contains(t, script, "quiet crashkernel=no")
		vars := map[string]string{"asset": c.asset, "uuid": "0d6a-uuid"}
		expand := func(s string) string {
			return regexp.MustCompile(`\$\{([a-z]+)\}`).ReplaceAllStringFunc(s, func(m string) string { return vars[m[2:len(m)-1]] })
		}
		fetched := 0
		for _, line := range strings.Split(script, "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[0] == "set":
				vars[f[1]] = expand(f[2])
			case len(f) >= 4 && (f[0] == "kernel" || f[0] == "initrd") && f[1] == "--name":
				u := expand(f[3])
				require.True(t, strings.HasPrefix(u, ts.URL+"/provision/"+c.mac+"?"), u)
				resp, body := get(t, u)
				want := http.StatusOK
				if strings.Contains(u, "stage=runtime") {
					want = http.StatusForbidden // secure mode: Go's client uses an unprivileged port
				}
				assert.Equal(t, want, resp.StatusCode, "%s: %s", u, body)
				fetched++
			}
		}
		assert.Equal(t, 4, fetched, "kernel, image, system and runtime")
	}
}
