package nodedb

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"
)

// The fast path reads the block-style YAML that Warewulf, wwboot and every
// YAML library write — mappings, sequences of scalars, plain and simply
// quoted scalars, comments — straight into Records, a record at a time on
// every core. Anything else in a record (anchors, tags, flow collections,
// block scalars, escapes, unknown keys, resources) sends that record to
// yaml.v3, and anything odd at the top level sends the whole file there, so
// the result is always what yaml.v3 would decode; a fuzz test holds the two
// to that. yaml.v3 alone reads 100,000 nodes in several seconds.

// errSlow says the fast path declines the input.
var errSlow = errors.New("nodedb: needs the full YAML parser")

// fastParse decodes data if it is in the plain block style. ok is false
// when the caller must use the full parser (for the whole file).
func fastParse(text string) (cfg *Config, ok bool) {
	if len(text) >= 1<<31 || !printable(text) || strings.Count(text, "\r") != strings.Count(text, "\r\n") {
		return nil, false
	}
	lines := splitLines(text)
	cfg = normalize(&Config{})
	type span struct {
		section string
		from    int // index of the record's key line
		to      int
	}
	var spans []span
	seen := map[string]bool{}
	for i := 0; i < len(lines); {
		l := lines[i]
		if int(l.indent) != 0 {
			return nil, false
		}
		key, rest, isKey := cutKey(l.text)
		if !isKey {
			return nil, false
		}
		switch key {
		case "WW_INTERNAL":
			n, err := atoiRange(rest, -1<<31, 1<<31-1)
			if err != nil {
				return nil, false
			}
			cfg.WWInternal = n
			i++
			continue
		case "nodeprofiles", "nodes":
			if seen[key] {
				return nil, false
			}
			seen[key] = true
		default:
			return nil, false
		}
		if rest != "" && rest != "{}" && !isNull(rest) {
			return nil, false
		}
		i++
		if rest != "" || i >= len(lines) || int(lines[i].indent) == 0 {
			continue // an empty section
		}
		child := int(lines[i].indent)
		for i < len(lines) && int(lines[i].indent) > 0 {
			if int(lines[i].indent) != child {
				return nil, false
			}
			from := i
			for i++; i < len(lines) && int(lines[i].indent) > child; i++ {
			}
			spans = append(spans, span{key, from, i})
		}
	}
	recs := make([]*Record, len(spans))
	names := make([]string, len(spans))
	bad := make([]bool, len(spans))
	d := newFastDecoder(lines)
	forEach(len(spans), func(s int) {
		sp := spans[s]
		name, rest, isKey := cutKey(lines[sp.from].text)
		names[s] = name
		r := &Record{}
		switch {
		case !isKey:
			bad[s] = true
		case rest == "" || isNull(rest) || rest == "{}":
			if sp.to > sp.from+1 && (rest != "" || d.block(reflect.ValueOf(r).Elem(), sp.from+1, sp.to) != nil) {
				bad[s] = true
			}
		default:
			bad[s] = true
		}
		recs[s] = r
	})
	for s, sp := range spans {
		if bad[s] { // this record only goes through yaml.v3
			end := len(text)
			if sp.to < len(lines) {
				end = int(lines[sp.to].off)
			}
			one, _, unknown, err := parse("", []byte(sp.section+":\n"+text[int(lines[sp.from].off):end]))
			if err != nil || len(unknown) > 0 { // unknown keys: the caller needs their lines
				return nil, false
			}
			r, found := one.Nodes[names[s]]
			if sp.section == "nodeprofiles" {
				r, found = one.NodeProfiles[names[s]]
			}
			if !found {
				return nil, false
			}
			recs[s] = r
		}
		into := cfg.Nodes
		if sp.section == "nodeprofiles" {
			into = cfg.NodeProfiles
		}
		if _, dup := into[names[s]]; dup {
			return nil, false
		}
		if r := recs[s]; !bad[s] && r.ContainerName != "" {
			if r.ImageName != "" && r.ImageName != r.ContainerName {
				return nil, false
			}
			r.ImageName, r.ContainerName = r.ContainerName, ""
		}
		into[names[s]] = recs[s]
	}
	return cfg, true
}

// printable reports whether every character is one YAML allows in a
// document (tab, line breaks and the printable Unicode ranges).
func printable(s string) bool {
	for _, r := range s {
		switch {
		case r == '\t' || r == '\n' || r == '\r' || (r >= 0x20 && r <= 0x7e):
		case r == utf8.RuneError, r == 0xfeff:
			return false
		case r == 0x2028 || r == 0x2029: // line breaks to YAML
			return false
		case (r >= 0xa0 && r <= 0xd7ff) || (r >= 0xe000 && r <= 0xfffd) || r >= 0x10000:
		default:
			return false
		}
	}
	return true
}

// fline is a significant line: indentation and text without the comment.
type fline struct {
	text   string
	indent int32
	off    int32 // where the line starts in the file
}

// splitLines returns the lines that carry content, comments removed. A tab
// in the indentation or a document marker makes it return a line the
// callers reject (indent -1).
func splitLines(text string) []fline {
	out := make([]fline, 0, strings.Count(text, "\n")+1)
	for off := 0; off < len(text); {
		start := off
		var l string
		if i := strings.IndexByte(text[off:], '\n'); i >= 0 {
			l, off = text[off:off+i], off+i+1
		} else {
			l, off = text[off:], len(text)
		}
		l = strings.TrimSuffix(l, "\r")
		ind := 0
		for ind < len(l) && l[ind] == ' ' {
			ind++
		}
		if strings.HasPrefix(l[ind:], "\t") {
			out = append(out, fline{l[ind:], -1, int32(start)}) // tabs may not indent YAML
			continue
		}
		body := stripComment(l[ind:])
		if body == "" {
			continue
		}
		if strings.HasPrefix(body, "\t") || body == "---" || body == "..." || strings.HasPrefix(body, "%") {
			ind = -1
		}
		out = append(out, fline{body, int32(ind), int32(start)})
	}
	return out
}

// stripComment removes a trailing comment and spaces. A # starts a comment
// at the beginning or after a space, outside quotes; quotes make it give up
// on comments and keep the text (the value parser then declines anything
// it cannot read exactly).
func stripComment(s string) string {
	if strings.HasPrefix(s, "#") {
		return ""
	}
	if strings.IndexByte(s, '\'') < 0 && strings.IndexByte(s, '"') < 0 {
		if i := strings.Index(s, " #"); i >= 0 {
			s = s[:i]
		}
		return strings.TrimRight(s, " \t")
	}
	inS, inD := false, false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' && !inD:
			inS = !inS
		case c == '"' && !inS:
			inD = !inD
		case c == '#' && !inS && !inD && i > 0 && (s[i-1] == ' ' || s[i-1] == '\t'):
			return strings.TrimRight(s[:i], " \t")
		}
	}
	return strings.TrimRight(s, " \t")
}

// hasIndicator reports whether s holds a character that gives YAML syntax
// beyond a plain key (quotes, anchors, tags, flow collections, comments...).
func hasIndicator(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"', '\'', '#', '&', '*', '!', '|', '>', '{', '}', '[', ']', ',', '%', '@', '`', '?', '\t':
			return true
		}
	}
	return false
}

// cutKey splits "key: value" or "key:"; isKey is false for anything else.
func cutKey(s string) (key, rest string, isKey bool) {
	i := strings.Index(s, ": ")
	switch {
	case i >= 0:
		key, rest = s[:i], strings.TrimLeft(s[i+2:], " ")
	case strings.HasSuffix(s, ":"):
		key = s[:len(s)-1]
	default:
		return "", "", false
	}
	key = strings.TrimRight(key, " ")
	if key == "" || isNull(key) || hasIndicator(key) || strings.HasPrefix(key, "- ") || key == "-" || key == "<<" {
		return "", "", false
	}
	return key, rest, true
}

func isNull(s string) bool {
	switch s {
	case "~", "null", "Null", "NULL":
		return true
	}
	return false
}

// scalar reads a plain, single-quoted or escape-free double-quoted scalar.
// null reports YAML's null. ok is false for anything else.
func scalar(s string) (v string, null, ok bool) {
	if s == "" || isNull(s) {
		return "", true, true
	}
	switch s[0] {
	case '\'':
		if len(s) < 2 || s[len(s)-1] != '\'' {
			return "", false, false
		}
		inner := s[1 : len(s)-1]
		if strings.Contains(strings.ReplaceAll(inner, "''", ""), "'") {
			return "", false, false
		}
		return strings.ReplaceAll(inner, "''", "'"), false, true
	case '"':
		if len(s) < 2 || s[len(s)-1] != '"' {
			return "", false, false
		}
		inner := s[1 : len(s)-1]
		if strings.ContainsAny(inner, "\\\"") {
			return "", false, false
		}
		return inner, false, true
	case '&', '*', '!', '|', '>', '{', '[', '%', '@', '`', '?', '-', ':', ',', '#':
		if s != "-" && !(s[0] == '-' && len(s) > 1 && s[1] != ' ') {
			return "", false, false
		}
		if s == "-" {
			return "", false, false
		}
	}
	if strings.Contains(s, ": ") || strings.HasSuffix(s, ":") || strings.Contains(s, " #") || strings.IndexByte(s, '\t') >= 0 {
		return "", false, false
	}
	return s, false, true
}

// fastDecoder decodes blocks of lines into Go values by their yaml tags.
// It is read-only once made, so one serves every core.
type fastDecoder struct {
	lines  []fline
	fields map[reflect.Type]map[string]int
}

// newFastDecoder indexes the yaml keys of Record and every struct under it.
func newFastDecoder(lines []fline) *fastDecoder {
	d := &fastDecoder{lines: lines, fields: map[reflect.Type]map[string]int{}}
	var index func(t reflect.Type)
	index = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Map || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || d.fields[t] != nil {
			return
		}
		m := map[string]int{}
		d.fields[t] = m
		for i := 0; i < t.NumField(); i++ {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
			if tag != "" && tag != "-" {
				m[tag] = i
				index(t.Field(i).Type)
			}
		}
	}
	index(reflect.TypeOf(Record{}))
	return d
}

// block decodes lines [from, to), all indented more than their parent, into v.
func (d *fastDecoder) block(v reflect.Value, from, to int) error {
	indent := int(d.lines[from].indent)
	switch v.Kind() {
	case reflect.Slice:
		return d.seq(v, from, to, indent)
	case reflect.Struct, reflect.Map:
		return d.mapping(v, from, to, indent)
	}
	return errSlow
}

func (d *fastDecoder) seq(v reflect.Value, from, to, indent int) error {
	if v.Type().Elem().Kind() != reflect.String {
		return errSlow
	}
	items := make([]string, 0, to-from)
	for i := from; i < to; i++ {
		l := d.lines[i]
		if int(l.indent) != indent || !(strings.HasPrefix(l.text, "- ") || l.text == "-") {
			return errSlow
		}
		item := strings.TrimLeft(strings.TrimPrefix(l.text, "-"), " ")
		s, null, ok := scalar(item)
		if !ok || null {
			return errSlow
		}
		items = append(items, s)
	}
	v.Set(reflect.ValueOf(items))
	return nil
}

func (d *fastDecoder) mapping(v reflect.Value, from, to, indent int) error {
	var fields map[string]int
	var strMap map[string]string // tags: the common map, filled without reflection
	switch {
	case v.Kind() == reflect.Struct:
		fields = d.fields[v.Type()]
	case v.Type() == reflect.TypeFor[map[string]string]():
		if v.IsNil() {
			v.Set(reflect.ValueOf(make(map[string]string, to-from)))
		}
		strMap = v.Interface().(map[string]string)
	case v.IsNil():
		v.Set(reflect.MakeMap(v.Type()))
	}
	var seenBuf [32]string
	seen := seenBuf[:0] // struct keys so far; maps check themselves
	for i := from; i < to; {
		l := d.lines[i]
		if int(l.indent) != indent {
			return errSlow
		}
		key, rest, ok := cutKey(l.text)
		if !ok {
			return errSlow
		}
		dup := false
		switch {
		case strMap != nil:
			_, dup = strMap[key]
		case fields == nil:
			dup = v.MapIndex(reflect.ValueOf(key)).IsValid()
		default:
			dup = slices.Contains(seen, key)
			seen = append(seen, key)
		}
		if dup {
			return errSlow // duplicate key: let yaml.v3 say so
		}
		if strMap != nil && (i+1 == to || int(d.lines[i+1].indent) <= indent) {
			sv, null, ok := scalar(rest)
			if !ok || rest == "{}" || rest == "[]" {
				return errSlow
			}
			if !null {
				strMap[key] = sv
			} else {
				strMap[key] = ""
			}
			i++
			continue
		}
		// The value's lines: deeper ones, or a sequence at the same indentation.
		j := i + 1
		for j < to && (int(d.lines[j].indent) > indent || (int(d.lines[j].indent) == indent && rest == "" && (strings.HasPrefix(d.lines[j].text, "- ") || d.lines[j].text == "-"))) {
			j++
		}
		var target reflect.Value
		if fields != nil {
			fi, known := fields[key]
			if !known || key == "resources" {
				return errSlow
			}
			target = v.Field(fi)
		} else {
			target = reflect.New(v.Type().Elem()).Elem()
		}
		if err := d.value(target, rest, i+1, j); err != nil {
			return err
		}
		if fields == nil {
			v.SetMapIndex(reflect.ValueOf(key), target)
		}
		i = j
	}
	return nil
}

// value decodes one mapping value: rest is the text after "key:", and lines
// [from, to) the block below it.
func (d *fastDecoder) value(v reflect.Value, rest string, from, to int) error {
	if from < to {
		if rest != "" {
			return errSlow
		}
		if v.Kind() == reflect.Pointer {
			v.Set(reflect.New(v.Type().Elem()))
			v = v.Elem()
		}
		if v.Type() == reflect.TypeOf(Kernel{}) {
			return d.kernel(v.Addr().Interface().(*Kernel), from, to)
		}
		return d.block(v, from, to)
	}
	if rest == "{}" || rest == "[]" {
		switch {
		case rest == "{}" && v.Kind() == reflect.Map:
			v.Set(reflect.MakeMap(v.Type()))
		case rest == "{}" && v.Kind() == reflect.Pointer:
			v.Set(reflect.New(v.Type().Elem()))
		case rest == "[]" && v.Kind() == reflect.Slice:
			v.Set(reflect.MakeSlice(v.Type(), 0, 0))
		default:
			return errSlow
		}
		return nil
	}
	s, null, ok := scalar(rest)
	if !ok {
		return errSlow
	}
	if null {
		return nil
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Slice: // a scalar where a list goes: yaml.v3 refuses it
		return errSlow
	default:
		return errSlow
	}
	return nil
}

// kernel decodes the kernel block, whose args may be a list or a string.
func (d *fastDecoder) kernel(k *Kernel, from, to int) error {
	indent := int(d.lines[from].indent)
	seen := map[string]bool{}
	for i := from; i < to; {
		key, rest, ok := cutKey(d.lines[i].text)
		if !ok || int(d.lines[i].indent) != indent || seen[key] {
			return errSlow
		}
		seen[key] = true
		j := i + 1
		for j < to && (int(d.lines[j].indent) > indent || (int(d.lines[j].indent) == indent && rest == "" && (strings.HasPrefix(d.lines[j].text, "- ") || d.lines[j].text == "-"))) {
			j++
		}
		switch {
		case key == "version":
			if err := d.value(reflect.ValueOf(&k.Version).Elem(), rest, i+1, j); err != nil {
				return err
			}
		case key == "args" && j == i+1 && rest != "[]":
			s, null, ok := scalar(rest)
			if !ok {
				return errSlow
			}
			if !null {
				k.Args = splitArgs(s)
			}
		case key == "args":
			if err := d.value(reflect.ValueOf(&k.Args).Elem(), rest, i+1, j); err != nil {
				return err
			}
		default:
			return errSlow
		}
		i = j
	}
	return nil
}
