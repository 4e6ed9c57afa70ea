package nodedb

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestRedactAndUnredact(t *testing.T) {
	r := Record{Comment: "c", AssetKey: "asset-1", Ipmi: &IPMI{UserName: "admin", Password: "hunter2"}}
	m := r.Redact()
	assert.Equal(t, Redacted, m.Ipmi.Password)
	assert.Equal(t, Redacted, m.AssetKey)
	assert.Equal(t, "admin", m.Ipmi.UserName)
	assert.Equal(t, "hunter2", r.Ipmi.Password, "the original keeps its secret")
	assert.Equal(t, "asset-1", r.AssetKey)

	// No secret, nothing masked: an empty password does not read as set.
	assert.Equal(t, Record{Ipmi: &IPMI{UserName: "u"}}, Record{Ipmi: &IPMI{UserName: "u"}}.Redact())

	// Written back, the mask keeps the stored value.
	assert.Empty(t, m.Unredact(&r))
	assert.Equal(t, "hunter2", m.Ipmi.Password)
	assert.Equal(t, "asset-1", m.AssetKey)

	// With nothing stored, the mask is reported, never taken as the secret.
	n := Record{AssetKey: Redacted, Ipmi: &IPMI{Password: Redacted}}
	assert.Equal(t, []string{"ipmi password", "asset key"}, n.Unredact(nil))
	assert.Equal(t, []string{"ipmi password"}, (&Record{Ipmi: &IPMI{Password: Redacted}}).Unredact(&Record{Ipmi: &IPMI{}}))
}
