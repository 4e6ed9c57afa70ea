package image

import (
	"path"
	"strings"
)

// KernelSelectedBy reports whether a node's kernel version (nodes.conf
// kernel: version:) selects m's kernel, by Warewulf 4.7's rule
// (internal/pkg/kernel FromNode and collection.Version): version is a path
// of the image ("/boot/vmlinuz-6.1.0-25-amd64", the leading slash optional) naming that kernel file, or
// a prefix of the version Warewulf reads from the kernel's path
// (KernelVersionOf: "6.1.0-25" for /boot/vmlinuz-6.1.0-25-amd64, so "6.1"
// and "6.1.0-25" select it and "6.2" does not). wwboot also takes a prefix
// of the full release m.KernelVersion ("6.1.0-25-amd64", as `wwboot image
// kernels` prints it), which Warewulf would not find. An empty version
// selects the image's kernel; an image without a kernel is selected by
// nothing else.
//
// It looks at m's one kernel only: of two kernels in the tree that both
// match, Warewulf takes the first in its search order, and the image keeps
// the one it was built with.
func (m Meta) KernelSelectedBy(version string) bool {
	version = strings.TrimSpace(version)
	if version == "" {
		return true
	}
	if m.KernelSource == "" && m.KernelVersion == "" {
		return false
	}
	// Warewulf joins the version onto the image root and takes the file
	// there when it exists.
	// KernelSource is the tree path without its leading slash.
	if strings.Contains(version, "/") && m.KernelSource != "" && path.Join("/", version) == path.Join("/", m.KernelSource) {
		return true
	}
	ww := KernelVersionOf(m.KernelSource)
	if ww == "" {
		ww = KernelVersionOf("vmlinuz-" + m.KernelVersion)
	}
	if ww != "" && strings.HasPrefix(ww, version) {
		return true
	}
	return m.KernelVersion != "" && strings.HasPrefix(m.KernelVersion, version)
}
