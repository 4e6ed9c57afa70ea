package provision_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestAPIMaskedSecretWithNothingToKeep: "***" written back means "keep the
// stored secret"; where none is stored the API refuses it (400) instead of
// storing the mask as the BMC password, and GETs never return a secret,
// with the token or without.
func TestAPIMaskedSecretWithNothingToKeep(t *testing.T) {
	l := newAPILab(t)
	u := l.serveOn(t, "127.0.0.1:0") + "/api/v1/profiles/"
	code, body := call(t, "POST", u+"bmc", apiToken, `{"ipmi":{"username":"admin","password":"***"}}`)
	assert.Equal(t, http.StatusBadRequest, code, string(body))
	assert.Contains(t, string(body), "ipmi password")
	code, body = call(t, "POST", u+"bmc", apiToken, `{"asset key":"***"}`)
	assert.Equal(t, http.StatusBadRequest, code, string(body))
	assert.Contains(t, string(body), "asset key")
	db, err := l.store.Snapshot(context.Background())
	require.NoError(t, err)
	_, err = db.Profile("bmc")
	assert.Error(t, err, "nothing stored")

	code, body = call(t, "POST", u+"bmc", apiToken, `{"ipmi":{"username":"admin","password":"s3cret-bmc"}}`)
	require.Equal(t, http.StatusCreated, code, string(body))
	for _, tok := range []string{"", apiToken} {
		code, body = call(t, "GET", u+"bmc", tok, "")
		require.Equal(t, http.StatusOK, code)
		assert.NotContains(t, string(body), "s3cret-bmc")
	}
}
