package busy

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSweepWaitsForNoOperation: a sweep is skipped while any operation
// holds the directory, runs once none does, and an operation's own start
// sweeps only when it is alone.
func TestSweepWaitsForNoOperation(t *testing.T) {
	dir := t.TempDir()
	swept := 0
	clean := func() error { swept++; return nil }

	rel1, err := Begin(dir, clean)
	require.NoError(t, err)
	assert.Equal(t, 1, swept, "the first operation sweeps")
	rel2, err := Begin(dir, clean)
	require.NoError(t, err)
	assert.Equal(t, 1, swept, "a second operation does not sweep under the first")

	ran, err := Sweep(dir, clean)
	require.NoError(t, err)
	assert.False(t, ran)
	rel1()
	ran, _ = Sweep(dir, clean)
	assert.False(t, ran, "one operation is still running")
	rel2()
	ran, err = Sweep(dir, clean)
	require.NoError(t, err)
	assert.True(t, ran)
	assert.Equal(t, 2, swept)

	boom := errors.New("boom")
	_, err = Sweep(dir, func() error { return boom })
	assert.ErrorIs(t, err, boom)
	rel, err := Begin(dir, func() error { return boom })
	require.NoError(t, err, "a failed sweep does not stop the operation")
	rel()
}
