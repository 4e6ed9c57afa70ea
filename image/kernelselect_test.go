package image

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestKernelSelectedBy pins Warewulf's kernel version rule with its own
// kernel names (internal/pkg/util/version_test.go, kernel_test.go): a prefix
// of the version read from the path, or the path itself.
func TestKernelSelectedBy(t *testing.T) {
	// As the store records it: the tree path without the leading slash.
	debian := Meta{KernelSource: "boot/vmlinuz-6.1.0-25-amd64", KernelVersion: "6.1.0-25-amd64"}
	el9 := Meta{KernelSource: "/lib/modules/5.14.0-427.37.1.el9_4.aarch64/vmlinuz", KernelVersion: "5.14.0-427.37.1.el9_4.aarch64"}
	respin := Meta{KernelSource: "/boot/vmlinuz-5.14.0-611.55.1.el9_7.0.3.x86_64", KernelVersion: "5.14.0-611.55.1.el9_7.0.3.x86_64"}
	leap := Meta{KernelSource: "/lib/modules/6.12.0-160000.33-default/vmlinuz", KernelVersion: "6.12.0-160000.33-default"}
	arch := Meta{KernelSource: "/boot/vmlinuz-linux", KernelVersion: "linux"}
	for _, c := range []struct {
		m       Meta
		version string
		want    bool
	}{
		{debian, "", true},
		{debian, "6.1", true},
		{debian, "6.1.0", true},
		{debian, "6.1.0-25", true},
		{debian, "6.1.0-2", true}, // a prefix, as strings.HasPrefix in Warewulf
		{debian, "6.1.0-25-amd64", true},
		{debian, "/boot/vmlinuz-6.1.0-25-amd64", true},
		{debian, "boot/vmlinuz-6.1.0-25-amd64", true},
		{debian, "/boot/vmlinuz-6.1.0-26-amd64", false},
		{debian, "6.2", false},
		{debian, "6.1.0-26", false},
		{debian, "6.10", false},
		{el9, "5.14.0-427", true},
		{el9, "5.14.0-427.37.1", true},
		{el9, "5.14.0-427.37.1.el9_4.aarch64", true},
		{el9, "5.14.0-362", false},
		{respin, "5.14.0-611.55.1", true},
		{respin, "5.14.0-611.55.2", false},
		{leap, "6.12.0-160000", true},
		{leap, "6.12", true},
		{arch, "linux", true},
		{arch, "6.1", false},
		{Meta{}, "6.1", false},
		{Meta{KernelVersion: "6.1.0-25-amd64"}, "6.1.0-25", true}, // a record without the source path
	} {
		assert.Equal(t, c.want, c.m.KernelSelectedBy(c.version), "%s selects %s", c.version, c.m.KernelSource)
	}
}
