package main

import (
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
)

// addCompletions gives the commands that take node, profile, overlay or
// image names the names of ROOT for shell completion (cobra's `wwboot
// completion bash|zsh|fish|powershell` writes the scripts). It reads the
// files directly and never fails: a completion offers nothing rather
// than an error.
func addCompletions(a *app, root *cobra.Command) {
	nodes := func() []string { return inventoryNames(a, false) }
	profiles := func() []string { return inventoryNames(a, true) }
	overlays := func() []string {
		seen := map[string]bool{}
		for _, n := range overlay.BuiltinNames() {
			seen[n] = true
		}
		if ents, err := os.ReadDir(a.path("overlays")); err == nil {
			for _, e := range ents {
				if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
					seen[e.Name()] = true
				}
			}
		}
		return sortedKeys(seen)
	}
	images := func() []string {
		s, err := image.OpenStore(a.path("images"))
		if err != nil {
			return nil
		}
		ms, err := s.List(root.Context())
		if err != nil {
			return nil
		}
		out := make([]string, 0, len(ms))
		for _, m := range ms {
			out = append(out, m.Name)
		}
		return out
	}
	// Which names each command completes: for every argument, or (first)
	// for the first only.
	table := map[string]struct {
		names func() []string
		first bool
	}{
		"node show": {nodes, false}, "node set": {nodes, false}, "node unset": {nodes, false},
		"node delete": {nodes, false}, "node status": {nodes, false}, "node console": {nodes, true},
		"node revoke": {nodes, false}, "profile delete": {profiles, false},
		"profile show": {profiles, false}, "profile set": {profiles, false}, "profile unset": {profiles, false},
		"overlay show": {overlays, true}, "overlay info": {overlays, true}, "overlay edit": {overlays, true},
		"overlay delete": {overlays, true}, "overlay mkdir": {overlays, true}, "overlay import": {overlays, true},
		"overlay chmod": {overlays, true}, "overlay chown": {overlays, true},
		"overlay files": {nodes, true}, "overlay render": {nodes, true}, "overlay build": {nodes, false},
		"image show": {images, true}, "image build": {images, true}, "image delete": {images, false},
		"image copy": {images, true}, "image rename": {images, true}, "image kernels": {images, true},
		"power on": {nodes, false}, "power off": {nodes, false}, "power cycle": {nodes, false},
		"power reset": {nodes, false}, "power status": {nodes, false},
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		key := strings.TrimPrefix(c.CommandPath(), root.Name()+" ")
		if e, ok := table[key]; ok && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
				if e.first && len(args) > 0 {
					return nil, cobra.ShellCompDirectiveDefault
				}
				return e.names(), cobra.ShellCompDirectiveNoFileComp
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// inventoryNames lists the node (or profile) names of ROOT/nodes.conf.
func inventoryNames(a *app, profiles bool) []string {
	data, err := os.ReadFile(a.path("nodes.conf"))
	if err != nil {
		return nil
	}
	c, err := nodedb.Parse(a.path("nodes.conf"), data)
	if err != nil {
		return nil
	}
	recs := c.Nodes
	if profiles {
		recs = c.NodeProfiles
	}
	seen := map[string]bool{}
	for n := range recs {
		seen[n] = true
	}
	return sortedKeys(seen)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
