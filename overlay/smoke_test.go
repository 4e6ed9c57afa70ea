package overlay

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSmoke(t *testing.T) {
	db := testDB(t, testConfig(3))
	r := newTestRenderer(t, nil)
	n, _ := db.Node("n00002")
	for _, k := range []Kind{System, Runtime} {
		a, err := r.Render(context.Background(), db, n, k)
		require.NoError(t, err)
		m, order := unpack(t, a)
		for _, p := range order {
			t.Logf("%s %o %q", p, m[p].mode, m[p].data)
		}
	}
}
