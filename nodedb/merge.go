package nodedb

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Negation is the prefix that removes a list entry: a node whose system
// overlay lists "~wwinit" drops the wwinit its profiles gave it.
const Negation = "~"

// mergeRecord merges src over dst in place, as Warewulf 4.7 merges (its
// node.MergeNode, internal/pkg/node/mergo.go, which runs mergo with
// WithOverride and WithAppendSlice): scalars set in src win, lists append
// as written (~x entries included: cleanList applies them once the whole
// chain is merged), maps merge by key, nested records field by field, and
// resources deeply (maps by key, lists appended). Discoverable and the
// asset key are a node's own (node true): Warewulf's Profile has no such
// fields, so a profile's values are not inherited.
//
// It copies on write: maps, lists and nested records dst shares with other
// records are replaced, never changed, so dst may start as a shallow copy
// of a shared record. Merging into a zero Record makes a deep copy of src
// (free-form resource values aside).
func mergeRecord(dst, src *Record, node bool) {
	// The fields every node has are merged by hand: this runs once per node
	// per load, and reflection made it the slowest step of loading 100,000
	// nodes. The rare nested records go through mergeValue; both follow the
	// same rules.
	for _, f := range [...]struct {
		dst *string
		src string
	}{
		{&dst.Comment, src.Comment}, {&dst.ClusterName, src.ClusterName}, {&dst.ImageName, src.ImageName},
		{&dst.ContainerName, src.ContainerName}, {&dst.Ipxe, src.Ipxe}, {&dst.Init, src.Init}, {&dst.Root, src.Root},
		{&dst.PrimaryNetDev, src.PrimaryNetDev},
	} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	if node {
		if src.Discoverable != "" {
			dst.Discoverable = src.Discoverable
		}
		if src.AssetKey != "" {
			dst.AssetKey = src.AssetKey
		}
	}
	for _, f := range [...]struct {
		dst *[]string
		src []string
	}{
		{&dst.Profiles, src.Profiles}, {&dst.RuntimeOverlay, src.RuntimeOverlay}, {&dst.SystemOverlay, src.SystemOverlay},
	} {
		if len(f.src) > 0 {
			*f.dst = mergeList(*f.dst, f.src)
		}
	}
	if src.Kernel != nil {
		k := Kernel{}
		if dst.Kernel != nil {
			k = *dst.Kernel
		}
		if src.Kernel.Version != "" {
			k.Version = src.Kernel.Version
		}
		if len(src.Kernel.Args) > 0 {
			k.Args = mergeList(k.Args, src.Kernel.Args)
		}
		k.Extra = nil
		dst.Kernel = &k
	}
	if len(src.NetDevs) > 0 {
		m := make(map[string]*NetDev, len(dst.NetDevs)+len(src.NetDevs))
		maps.Copy(m, dst.NetDevs)
		for name, sd := range src.NetDevs {
			if sd == nil {
				continue
			}
			var nd NetDev
			if d := m[name]; d != nil {
				nd = *d
			}
			mergeNetDev(&nd, sd)
			m[name] = &nd
		}
		dst.NetDevs = m
	}
	dst.Tags = mergeMap(dst.Tags, src.Tags)
	if len(src.Resources) > 0 {
		dst.Resources = mergeAny(dst.Resources, src.Resources).(map[string]any)
	}
	for _, f := range []struct{ dst, src reflect.Value }{
		{reflect.ValueOf(&dst.Ipmi).Elem(), reflect.ValueOf(src.Ipmi)},
		{reflect.ValueOf(&dst.Disks).Elem(), reflect.ValueOf(src.Disks)},
		{reflect.ValueOf(&dst.FileSystems).Elem(), reflect.ValueOf(src.FileSystems)},
	} {
		mergeValue(f.dst, f.src, false)
	}
}

// mergeAny merges YAML-decoded resource data src over dst the way mergo
// (WithOverride, WithAppendSlice) does in Warewulf: two maps merge key by
// key, recursively; two lists append; anything else is replaced by src
// unless src is nil. It never changes dst or src: merged maps and lists are
// new.
func mergeAny(dst, src any) any {
	switch s := src.(type) {
	case nil:
		return dst
	case map[string]any:
		d, ok := dst.(map[string]any)
		if !ok || d == nil {
			return s
		}
		m := make(map[string]any, len(d)+len(s))
		maps.Copy(m, d)
		for k, v := range s {
			if old, ok := m[k]; ok {
				m[k] = mergeAny(old, v)
			} else {
				m[k] = v
			}
		}
		return m
	case []any:
		d, ok := dst.([]any)
		if !ok {
			return s
		}
		return append(slices.Clip(d), s...)
	}
	return src
}

func mergeNetDev(dst, src *NetDev) {
	for _, f := range [...]struct {
		dst *string
		src string
	}{
		{&dst.Type, src.Type}, {&dst.OnBoot, src.OnBoot}, {&dst.Device, src.Device}, {&dst.Hwaddr, src.Hwaddr},
		{&dst.Ipaddr, src.Ipaddr}, {&dst.Netmask, src.Netmask}, {&dst.Gateway, src.Gateway}, {&dst.Ipaddr6, src.Ipaddr6},
		{&dst.Prefixlen6, src.Prefixlen6}, {&dst.Gateway6, src.Gateway6}, {&dst.MTU, src.MTU},
	} {
		if f.src != "" {
			*f.dst = f.src
		}
	}
	dst.Tags = mergeMap(dst.Tags, src.Tags)
}

// mergeMap returns a new map of dst's entries overridden by src's, or dst
// itself when src is empty.
func mergeMap[V any](dst, src map[string]V) map[string]V {
	if len(src) == 0 {
		return dst
	}
	m := make(map[string]V, len(dst)+len(src))
	maps.Copy(m, dst)
	maps.Copy(m, src)
	return m
}

// cloneRecord returns a deep copy of r, lists verbatim (~x entries kept).
func cloneRecord(r *Record) *Record {
	out := &Record{}
	mergeValue(reflect.ValueOf(out).Elem(), reflect.ValueOf(r).Elem(), true)
	return out
}

// cloneConfig returns a deep copy of cfg.
func cloneConfig(cfg *Config) *Config {
	out := &Config{WWInternal: cfg.WWInternal, NodeProfiles: make(map[string]*Record, len(cfg.NodeProfiles)), Nodes: make(map[string]*Record, len(cfg.Nodes))}
	for k, v := range cfg.NodeProfiles {
		out.NodeProfiles[k] = cloneRecord(v)
	}
	for k, v := range cfg.Nodes {
		out.Nodes[k] = cloneRecord(v)
	}
	return out
}

// mergeValue merges src into dst; raw copies lists verbatim instead of
// applying ~x negations.
func mergeValue(dst, src reflect.Value, raw bool) {
	if src.IsZero() { // most fields of most records are unset
		return
	}
	switch src.Kind() {
	case reflect.String:
		if src.Len() > 0 {
			dst.SetString(src.String())
		}
	case reflect.Slice: // []string
		switch {
		case raw && src.Len() > 0:
			dst.Set(reflect.ValueOf(slices.Clone(src.Interface().([]string))))
		case !raw && (src.Len() > 0 || dst.Len() > 0):
			dst.Set(reflect.ValueOf(mergeList(dst.Interface().([]string), src.Interface().([]string))))
		}
	case reflect.Pointer: // copy on write: dst may share the struct with others
		if src.IsNil() {
			return
		}
		nv := reflect.New(src.Type().Elem())
		if !dst.IsNil() {
			nv.Elem().Set(dst.Elem())
		}
		mergeValue(nv.Elem(), src.Elem(), raw)
		dst.Set(nv)
	case reflect.Struct:
		for i := 0; i < src.NumField(); i++ {
			mergeValue(dst.Field(i), src.Field(i), raw)
		}
	case reflect.Map: // copy on write, as for pointers
		if src.Len() == 0 {
			return
		}
		m := reflect.MakeMapWithSize(src.Type(), dst.Len()+src.Len())
		iter := dst.MapRange()
		for iter.Next() {
			m.SetMapIndex(iter.Key(), iter.Value())
		}
		iter = src.MapRange()
		for iter.Next() {
			k, sv := iter.Key(), iter.Value()
			if sv.Kind() == reflect.Pointer { // records keyed by name: merge field by field
				dv := m.MapIndex(k)
				if !dv.IsValid() {
					dv = reflect.Zero(sv.Type())
				}
				nv := reflect.New(sv.Type()).Elem()
				nv.Set(dv)
				mergeValue(nv, sv, raw)
				m.SetMapIndex(k, nv)
				continue
			}
			m.SetMapIndex(k, sv)
		}
		dst.Set(m)
	case reflect.Interface, reflect.Int, reflect.Bool:
		if !src.IsZero() {
			dst.Set(src)
		}
	default:
		panic(fmt.Sprintf("nodedb: cannot merge %s", src.Type()))
	}
}

// mergeList appends src to a copy of dst, ~x entries included.
func mergeList(dst, src []string) []string {
	out := make([]string, 0, len(dst)+len(src))
	return append(append(out, dst...), src...)
}

// cleanList applies a list's negations as Warewulf's cleanList
// (internal/pkg/node/methods.go) does: an entry ~x anywhere in the list
// removes every x, before or after it, and the ~x entries themselves go.
// The result is nil when nothing is left; list is not changed.
func cleanList(list []string) []string {
	var neg map[string]bool
	for _, s := range list {
		if x, ok := strings.CutPrefix(s, Negation); ok {
			if neg == nil {
				neg = map[string]bool{}
			}
			neg[x] = true
		}
	}
	if neg == nil {
		return list
	}
	var out []string
	for _, s := range list {
		if _, isNeg := strings.CutPrefix(s, Negation); isNeg || neg[s] {
			continue
		}
		out = append(out, s)
	}
	return out
}

// cleanLists applies negations to the lists Warewulf cleans after merging
// (Profile.cleanLists): profiles, both overlay lists and the kernel
// arguments. Lists are replaced, never changed in place.
func cleanLists(r *Record) {
	r.Profiles = cleanList(r.Profiles)
	r.SystemOverlay = cleanList(r.SystemOverlay)
	r.RuntimeOverlay = cleanList(r.RuntimeOverlay)
	if r.Kernel != nil {
		if args := cleanList(r.Kernel.Args); len(args) != len(r.Kernel.Args) {
			k := *r.Kernel
			k.Args = args
			r.Kernel = &k
		}
	}
}

// chainOf expands a node's profile list the way Warewulf's getNodeProfiles
// does (internal/pkg/node/mergo.go): each profile is preceded by the
// profiles it names, recursively; a profile already visited anywhere in the
// expansion is skipped (so a cycle ends there); ~x entries are kept in
// place and, once everything is expanded, remove x from the whole chain
// wherever it stands (cleanList). A profile that does not exist stays in
// the chain (merging skips it, as MergeNode does). checkChains reports
// missing profiles and cycles.
func chainOf(profiles map[string]*Record, list []string) []string {
	visited := map[string]bool{}
	var out []string
	var walk func(list []string)
	walk = func(list []string) {
		for _, p := range list {
			if strings.HasPrefix(p, Negation) {
				out = append(out, p)
				continue
			}
			if visited[p] {
				continue
			}
			visited[p] = true
			if rec, ok := profiles[p]; ok {
				walk(rec.Profiles)
			}
			out = append(out, p)
		}
	}
	walk(list)
	return cleanList(out)
}
