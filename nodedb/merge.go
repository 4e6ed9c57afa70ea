package nodedb

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Negation is the prefix that removes an inherited list entry: a node whose
// system overlay lists "~wwinit" drops the wwinit its profiles gave it.
const Negation = "~"

// mergeRecord merges src over dst in place, as Warewulf documents: scalars
// set in src win, lists append (with ~x removing x), maps merge by key, and
// nested records merge field by field. dst must own all its maps and slices
// (merging into a zero Record makes a deep copy of src).
func mergeRecord(dst, src *Record) {
	mergeValue(reflect.ValueOf(dst).Elem(), reflect.ValueOf(src).Elem(), false)
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
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		if dst.IsNil() {
			dst.Set(reflect.New(src.Type().Elem()))
		}
		mergeValue(dst.Elem(), src.Elem(), raw)
	case reflect.Struct:
		for i := 0; i < src.NumField(); i++ {
			mergeValue(dst.Field(i), src.Field(i), raw)
		}
	case reflect.Map:
		if src.Len() == 0 {
			return
		}
		if dst.IsNil() {
			dst.Set(reflect.MakeMapWithSize(src.Type(), src.Len()))
		}
		iter := src.MapRange()
		for iter.Next() {
			k, sv := iter.Key(), iter.Value()
			if sv.Kind() == reflect.Pointer { // records keyed by name: merge field by field
				dv := dst.MapIndex(k)
				nv := reflect.New(sv.Type().Elem())
				if dv.IsValid() && !dv.IsNil() {
					mergeValue(nv.Elem(), dv.Elem(), raw) // copy: dst may share it with others
				}
				mergeValue(nv, sv, raw)
				dst.SetMapIndex(k, nv)
				continue
			}
			dst.SetMapIndex(k, sv)
		}
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
