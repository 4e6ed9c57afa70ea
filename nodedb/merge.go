package nodedb

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strings"
)

// Negation is the prefix that removes an inherited list entry: a node whose
// system overlay lists "~wwinit" drops the wwinit its profiles gave it.
const Negation = "~"

// mergeRecord merges src over dst in place, as Warewulf documents: scalars
// set in src win, lists append (with ~x removing x), maps merge by key, and
// nested records merge field by field. It copies on write: maps, lists and
// nested records dst shares with other records are replaced, never changed,
// so dst may start as a shallow copy of a shared record. Merging into a
// zero Record makes a deep copy of src (free-form resource values aside).
func mergeRecord(dst, src *Record) {
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
		{&dst.PrimaryNetDev, src.PrimaryNetDev}, {&dst.Discoverable, src.Discoverable}, {&dst.AssetKey, src.AssetKey},
	} {
		if f.src != "" {
			*f.dst = f.src
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
	dst.Resources = mergeMap(dst.Resources, src.Resources)
	for _, f := range []struct{ dst, src reflect.Value }{
		{reflect.ValueOf(&dst.Ipmi).Elem(), reflect.ValueOf(src.Ipmi)},
		{reflect.ValueOf(&dst.Disks).Elem(), reflect.ValueOf(src.Disks)},
		{reflect.ValueOf(&dst.FileSystems).Elem(), reflect.ValueOf(src.FileSystems)},
	} {
		mergeValue(f.dst, f.src, false)
	}
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

// mergeList appends src to a copy of dst; an entry ~x removes every x
// gathered so far instead of being appended.
func mergeList(dst, src []string) []string {
	out := make([]string, 0, len(dst)+len(src))
	out = append(out, dst...)
	for _, s := range src {
		if neg, ok := strings.CutPrefix(s, Negation); ok {
			out = slices.DeleteFunc(out, func(x string) bool { return x == neg })
			continue
		}
		out = append(out, s)
	}
	return out
}

// expander resolves profile chains, memoizing each profile's expansion.
type expander struct {
	profiles map[string]*Record
	done     map[string][]string
}

// expand returns the profiles a list names, each preceded by the profiles
// it inherits, in merge order and without repeats; ~x drops x. stack holds
// the chain being expanded, to report cycles.
func (e *expander) expand(list []string, stack []string) ([]string, error) {
	var out []string
	for _, p := range list {
		if neg, ok := strings.CutPrefix(p, Negation); ok {
			out = slices.DeleteFunc(out, func(x string) bool { return x == neg })
			continue
		}
		if slices.Contains(stack, p) {
			return nil, fmt.Errorf("profile cycle %s: remove one of these inheritances", strings.Join(append(stack, p), " -> "))
		}
		sub, ok := e.done[p]
		if !ok {
			rec, found := e.profiles[p]
			if !found {
				return nil, fmt.Errorf("unknown profile %q: add it with 'wwboot profile add %s' or remove it from profiles", p, p)
			}
			var err error
			if sub, err = e.expand(rec.Profiles, append(stack, p)); err != nil {
				return nil, err
			}
			e.done[p] = sub
		}
		for _, s := range append(slices.Clip(sub), p) {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	return out, nil
}
