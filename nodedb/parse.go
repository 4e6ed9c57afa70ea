package nodedb

import (
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxErrors bounds how many problems one load reports.
const maxErrors = 20

// Parse decodes the contents of a nodes.conf file. file names the source in
// error messages. Keys wwboot does not know are kept in the records' Extra
// maps (Warewulf 4.7 ignores them; wwboot writes them back) and reported
// by ParseFindings and DB.Findings; the legacy "container name" key is read
// as "image name".
func Parse(file string, data []byte) (*Config, error) {
	if cfg, ok := fastParse(string(data)); ok {
		return cfg, nil
	}
	cfg, _, _, err := parse(file, data)
	return cfg, err
}

// parse also returns the YAML document tree, which locates errors by line
// and lets writes keep the user's comments and key order, and the keys it
// did not know, as findings.
func parse(file string, data []byte) (*Config, *yaml.Node, []*Error, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil, nil, &Error{File: file, Err: fmt.Errorf("not valid YAML: %w", err)}
	}
	cfg := &Config{}
	if doc.Kind == 0 { // empty file: an empty inventory
		return normalize(cfg), &doc, nil, nil
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return nil, nil, nil, &Error{File: file, Line: root.Line, Err: errors.New("top level must be a mapping with nodeprofiles: and nodes:")}
	}
	var errs []error
	var unknown []*Error
	checkKeys(root, reflect.TypeOf(Config{}), file, "", "", nil, &unknown)
	normalize(cfg)
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "WW_INTERNAL":
			if err := v.Decode(&cfg.WWInternal); err != nil {
				errs = append(errs, &Error{File: file, Line: v.Line, Field: k.Value, Err: fmt.Errorf("%w: write a whole number", err)})
			}
		case "nodeprofiles":
			errs = append(errs, decodeSection(file, "profile", v, cfg.NodeProfiles)...)
		case "nodes":
			errs = append(errs, decodeSection(file, "node", v, cfg.Nodes)...)
		}
	}
	if len(errs) > 0 {
		return nil, nil, nil, errors.Join(errs...)
	}
	normalize(cfg)
	for _, kind := range []string{"profile", "node"} {
		recs := cfg.NodeProfiles
		if kind == "node" {
			recs = cfg.Nodes
		}
		for name, r := range recs {
			if r.ContainerName != "" {
				if r.ImageName != "" && r.ImageName != r.ContainerName {
					errs = append(errs, &Error{File: file, Line: locate(&doc, kind, name, "container name"), Kind: kind, Name: name, Field: "container name",
						Err: fmt.Errorf("conflicts with image name %q: keep only image name", r.ImageName)})
				}
				r.ImageName, r.ContainerName = r.ContainerName, ""
			}
		}
	}
	if len(errs) > 0 {
		return nil, nil, nil, errors.Join(errs...)
	}
	return cfg, &doc, unknown, nil
}

// decodeSection decodes the records of nodeprofiles: or nodes: one by one,
// on every core. (Decoding the whole mapping at once is quadratic in
// yaml.v3, which checks each key against all the others.)
func decodeSection(file, kind string, m *yaml.Node, into map[string]*Record) []error {
	if m.Kind == yaml.ScalarNode && m.Tag == "!!null" {
		return nil
	}
	if m.Kind != yaml.MappingNode {
		return []error{&Error{File: file, Line: m.Line, Err: fmt.Errorf("the %ss must be a mapping of name: settings", kind)}}
	}
	n := len(m.Content) / 2
	recs := make([]*Record, n)
	errs := make([]error, n)
	forEach(n, func(i int) {
		k, v := m.Content[2*i], m.Content[2*i+1]
		r := &Record{}
		if err := v.Decode(r); err != nil {
			errs[i] = &Error{File: file, Line: v.Line, Kind: kind, Name: k.Value,
				Err: fmt.Errorf("%w (fix the value's type: lists as '- item' lines, maps as 'key: value')", err)}
		}
		recs[i] = r
	})
	var out []error
	for i := range n {
		name := m.Content[2*i]
		if errs[i] != nil {
			out = append(out, errs[i])
			continue
		}
		if _, dup := into[name.Value]; dup {
			out = append(out, &Error{File: file, Line: name.Line, Kind: kind, Name: name.Value, Err: fmt.Errorf("defined twice: keep one definition")})
			continue
		}
		into[name.Value] = recs[i]
	}
	return out
}

// normalize replaces nil maps and records so that callers can index freely.
func normalize(cfg *Config) *Config {
	if cfg.NodeProfiles == nil {
		cfg.NodeProfiles = map[string]*Record{}
	}
	if cfg.Nodes == nil {
		cfg.Nodes = map[string]*Record{}
	}
	for name, r := range cfg.NodeProfiles {
		if r == nil {
			cfg.NodeProfiles[name] = &Record{}
		}
	}
	for name, r := range cfg.Nodes {
		if r == nil {
			cfg.Nodes[name] = &Record{}
		}
	}
	return cfg
}

// checkKeys walks a YAML mapping against the Go type it decodes into and
// reports every key that has no field, with its line. Such keys are not
// errors: Warewulf 4.7 ignores them, wwboot keeps them (Extra).
func checkKeys(n *yaml.Node, t reflect.Type, file, kind, name string, path []string, errs *[]*Error) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode {
		return // checked where its anchor is defined; following it could loop
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return // a type error: Decode reports it
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" { // merge key: check the merged mapping instead
				checkKeys(v, t, file, kind, name, path, errs)
				continue
			}
			f, ok := fieldByKey(t, k.Value)
			if !ok {
				why := "kept as written and not used; fix its spelling or remove it"
				if old, ok := legacyKeys[k.Value]; ok {
					why = old + "; kept as written and not used"
				}
				*errs = append(*errs, &Error{File: file, Line: k.Line, Kind: kind, Name: name, Field: join(path, k.Value),
					Err: fmt.Errorf("unknown key %q (known keys here: %s): %s", k.Value, strings.Join(keysOf(t), ", "), why)})
				continue
			}
			checkKeys(v, f.Type, file, kind, name, append(path, k.Value), errs)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode || t.Elem().Kind() == reflect.Interface {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if kind == "" && len(path) == 1 { // the name of a profile or node
				switch path[0] {
				case "nodeprofiles":
					checkKeys(v, t.Elem(), file, "profile", k.Value, nil, errs)
					continue
				case "nodes":
					checkKeys(v, t.Elem(), file, "node", k.Value, nil, errs)
					continue
				}
			}
			checkKeys(v, t.Elem(), file, kind, name, append(path, k.Value), errs)
		}
	}
}

// legacyKeys explains keys that earlier Warewulf 4.x releases wrote and 4.7
// no longer reads.
var legacyKeys = map[string]string{
	"primary":         "Warewulf before 4.5 marked the primary device here; 4.5 and later use the node's \"primary network\"",
	"default":         "an early Warewulf 4 marker of the primary device; use the node's \"primary network\"",
	"ipcidr":          "Warewulf before 4.5 stored the derived address/prefix; it is computed now",
	"prefix":          "Warewulf before 4.5 stored the derived prefix length; it is computed now",
	"keys":            "Warewulf before 4.4 called tags keys; move them under tags",
	"tagsdel":         "a wwctl command-line field that older releases wrote by mistake",
	"kernel args":     "Warewulf before 4.4 wrote it at the top level; use kernel: args:",
	"kernel override": "Warewulf before 4.4 wrote it at the top level; use kernel: version:",
	"kernel version":  "Warewulf before 4.4 wrote it at the top level; use kernel: version:",
	"override":        "Warewulf 4.4/4.5 named the kernel version override; use version",
}

// fieldByKey finds the struct field whose yaml tag names key.
func fieldByKey(t reflect.Type, key string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if tag == key && tag != "-" {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

func keysOf(t reflect.Type) []string {
	var keys []string
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if tag != "" && tag != "-" {
			keys = append(keys, tag)
		}
	}
	sort.Strings(keys)
	return keys
}

func join(path []string, last ...string) string {
	return strings.Join(append(append([]string(nil), path...), last...), ".")
}

// locate returns the line of a field of a node or profile in the document,
// or of the record itself when the field is absent, or 0.
func locate(doc *yaml.Node, kind, name string, field ...string) int {
	if doc == nil {
		return 0
	}
	n := doc
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	section := "nodes"
	if kind == "profile" {
		section = "nodeprofiles"
	}
	line := 0
	for _, key := range append([]string{section, name}, field...) {
		k, v := lookupKey(n, key)
		if k == nil {
			return line
		}
		line, n = k.Line, v
	}
	return line
}

func lookupKey(n *yaml.Node, key string) (k, v *yaml.Node) {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i], n.Content[i+1]
		}
	}
	return nil, nil
}

// splitArgs splits a legacy one-string kernel command line.
func splitArgs(s string) []string {
	return strings.Fields(s)
}

// atoiRange parses a decimal integer within [lo, hi].
func atoiRange(s string, lo, hi int) (int, error) {
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%q is not a whole number from %d to %d", s, lo, hi)
	}
	return v, nil
}
