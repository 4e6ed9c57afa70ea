// Package hostlist reads and writes Slurm hostlist expressions such as
// n[001-004,010], a[1-3]b[01-02] or "x,y[1-2] z".
//
// The rules are Slurm's (src/common/hostlist.c, checked against scontrol of
// Slurm 22.05 in the tests):
//
//   - Expressions are split on commas, spaces and tabs outside brackets;
//     empty items are skipped.
//   - A bracket holds a comma list of numbers and lo-hi ranges. The width of
//     a range is the length of its lower bound as written, and every number of
//     the range is zero-padded to it: n[01-3] is n01 n02 n03, n[1-03] is n1 n2 n3.
//   - Several brackets multiply out. Text may sit between brackets but not
//     after the last one (n[1-2]-ib is refused, as Slurm does). The last
//     bracket varies fastest, the first slowest but for the ordering of the
//     earlier ones, which Slurm walks from the right: a[1-2]b[3-4]c[5-6] gives
//     a1b3c5 a1b3c6 a2b3c5 a2b3c6 a1b4c5 ...
//   - Expansion keeps the order and the duplicates of the expression.
//   - Compression (List.String, Compress) is scontrol show hostlist's: names
//     are split into a prefix and a numeric suffix (the trailing digits); a
//     name joins the previous range when its prefix is the same and its number
//     is the previous one plus one with a compatible zero padding (n9,n10 join
//     as n[9-10]; n1,n02 do not); consecutive ranges with the same prefix share
//     one bracket. Nothing is sorted or deduplicated: n3,n2,n1 stays n[3,2,1].
//
// Parse is stricter than Slurm where Slurm accepts malformed input by
// accident: an unclosed or stray bracket, a range without an upper bound
// (n[1-]), signs or spaces inside brackets, and numbers beyond 2^64-1 are
// errors here. A name whose digit suffix does not fit in 64 bits is kept as
// written (Slurm clamps it to 18446744073709551615).
package hostlist

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxRange is the most hosts one lo-hi range may name, Slurm's MAX_RANGE.
const MaxRange = 64 * 1024

// MaxHosts bounds the hosts one expression may expand to, so that a short
// hostile expression (a[0-65535]b[0-65535]) cannot exhaust memory.
const MaxHosts = 1 << 20

// ErrSyntax is wrapped by every error Parse returns.
var ErrSyntax = errors.New("invalid hostlist")

// hostRange is Slurm's hostrange: prefix followed by the numbers lo..hi,
// each zero-padded to width; or, when single, the one name prefix.
type hostRange struct {
	prefix string
	lo, hi uint64
	width  int
	single bool
}

func (r hostRange) count() uint64 {
	if r.single {
		return 1
	}
	return r.hi - r.lo + 1
}

// List is an ordered hostlist. The zero value is empty and ready to use.
type List struct {
	ranges []hostRange
	n      uint64
}

// Parse reads a hostlist expression. The error wraps ErrSyntax and quotes the
// offending item.
func Parse(expr string) (*List, error) {
	l := &List{}
	for _, tok := range split(expr) {
		if err := l.pushExpr(tok); err != nil {
			return nil, fmt.Errorf("%w: %q: %w", ErrSyntax, tok, err)
		}
	}
	return l, nil
}

// Expand returns the host names of expr in order, duplicates kept, as
// scontrol show hostnames prints them.
func Expand(expr string) ([]string, error) {
	l, err := Parse(expr)
	if err != nil {
		return nil, err
	}
	return l.Hosts(), nil
}

// Compress returns the ranged form of names, as scontrol show hostlist prints
// it for the comma-joined names. Each name is taken literally (no brackets).
func Compress(names []string) string {
	var l List
	for _, n := range names {
		l.Push(n)
	}
	return l.String()
}

// Len is the number of hosts in the list, duplicates counted.
func (l *List) Len() int { return int(l.n) }

// Push appends one host name, joining it to the last range where Slurm would.
func (l *List) Push(name string) {
	l.push(parseName(name))
}

// Hosts returns every host name in order.
func (l *List) Hosts() []string {
	out := make([]string, 0, l.n)
	for _, r := range l.ranges {
		if r.single {
			out = append(out, r.prefix)
			continue
		}
		for i := r.lo; ; i++ {
			out = append(out, r.prefix+pad(i, r.width))
			if i == r.hi {
				break
			}
		}
	}
	return out
}

// String is the compressed form, as scontrol show hostlist prints it.
func (l *List) String() string {
	var b strings.Builder
	for i := 0; i < len(l.ranges); {
		if i > 0 {
			b.WriteByte(',')
		}
		i = l.bracketed(&b, i)
	}
	return b.String()
}

// bracketed writes ranges[i] and the following ranges that share its bracket
// (Slurm's _get_bracketed_list) and returns the index after them.
func (l *List) bracketed(b *strings.Builder, i int) int {
	r := l.ranges
	brackets := r[i].count() > 1 || (i+1 < len(r) && sameBracket(r[i], r[i+1]))
	b.WriteString(r[i].prefix)
	if brackets {
		b.WriteByte('[')
	}
	start := i
	for {
		if i > start {
			b.WriteByte(',')
		}
		if !r[i].single {
			b.WriteString(pad(r[i].lo, r[i].width))
			if r[i].lo < r[i].hi {
				b.WriteByte('-')
				b.WriteString(pad(r[i].hi, r[i].width))
			}
		}
		i++
		if i >= len(r) || !sameBracket(r[i-1], r[i]) {
			break
		}
	}
	if brackets {
		b.WriteByte(']')
	}
	return i
}

// sameBracket is Slurm's hostrange_within_range: same prefix, both numbered.
func sameBracket(a, b hostRange) bool {
	return !a.single && !b.single && a.prefix == b.prefix
}

// push appends r, extending the last range when r continues it
// (Slurm's hostlist_push_range).
func (l *List) push(r hostRange) {
	if k := len(l.ranges); k > 0 {
		t := &l.ranges[k-1]
		if !t.single && !r.single && t.hi+1 == r.lo && t.hi != ^uint64(0) && t.prefix == r.prefix &&
			widthEquiv(t.lo, &t.width, r.lo, &r.width) {
			t.hi = r.hi
			l.n += r.count()
			return
		}
	}
	l.ranges = append(l.ranges, r)
	l.n += r.count()
}

// zeroPadded is the number of zeros that pad num to width.
func zeroPadded(num uint64, width int) int {
	d := len(strconv.FormatUint(num, 10))
	if width > d {
		return width - d
	}
	return 0
}

// widthEquiv reports whether widths wn (of n) and wm (of m) may be merged:
// equal, or applying either to both numbers changes neither's padding. On
// true the two widths are made equal (Slurm's _width_equiv).
func widthEquiv(n uint64, wn *int, m uint64, wm *int) bool {
	if *wn == *wm {
		return true
	}
	npad, nmpad := zeroPadded(n, *wn), zeroPadded(n, *wm)
	mpad, mnpad := zeroPadded(m, *wm), zeroPadded(m, *wn)
	switch {
	case npad != nmpad && mpad != mnpad:
		return false
	case npad != nmpad:
		*wm = *wn
	default:
		*wn = *wm
	}
	return true
}

func pad(n uint64, width int) string {
	s := strconv.FormatUint(n, 10)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

// parseName splits a literal host name into prefix and numeric suffix
// (Slurm's hostname_create).
func parseName(name string) hostRange {
	i := len(name)
	for i > 0 && name[i-1] >= '0' && name[i-1] <= '9' {
		i--
	}
	if i == len(name) {
		return hostRange{prefix: name, single: true}
	}
	num, err := strconv.ParseUint(name[i:], 10, 64)
	if err != nil {
		return hostRange{prefix: name, single: true}
	}
	return hostRange{prefix: name[:i], lo: num, hi: num, width: len(name) - i}
}

// split cuts expr at commas, spaces and tabs outside brackets, dropping empty
// items (Slurm's _next_tok).
func split(expr string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i <= len(expr); i++ {
		if i < len(expr) {
			switch expr[i] {
			case '[':
				depth++
				continue
			case ']':
				if depth > 0 {
					depth--
				}
				continue
			case ',', ' ', '\t':
				if depth > 0 {
					continue
				}
			default:
				continue
			}
		}
		if i > start {
			out = append(out, expr[start:i])
		}
		start = i + 1
	}
	return out
}

// numRange is one item of a bracket: lo..hi, padded to width.
type numRange struct {
	lo, hi uint64
	width  int
}

// pushExpr appends the hosts of one item of an expression.
func (l *List) pushExpr(tok string) error {
	if !strings.ContainsAny(tok, "[]") {
		l.Push(tok)
		return nil
	}
	// tok = text0 [list0] text1 [list1] ... [listK-1]; nothing after the last ']'.
	var texts []string
	var lists [][]numRange
	rest := tok
	for rest != "" {
		open := strings.IndexByte(rest, '[')
		if open < 0 {
			return errors.New("text after the last ']' (Slurm allows none)")
		}
		if strings.IndexByte(rest[:open], ']') >= 0 {
			return errors.New("']' without '['")
		}
		closeAt := strings.IndexByte(rest[open:], ']')
		if closeAt < 0 {
			return errors.New("'[' without ']'")
		}
		closeAt += open
		inner := rest[open+1 : closeAt]
		if strings.IndexByte(inner, '[') >= 0 {
			return errors.New("nested '['")
		}
		rs, err := parseRanges(inner)
		if err != nil {
			return err
		}
		texts = append(texts, rest[:open])
		lists = append(lists, rs)
		rest = rest[closeAt+1:]
	}
	total := uint64(1)
	for _, rs := range lists {
		var c uint64
		for _, r := range rs {
			c += r.hi - r.lo + 1
		}
		total *= c
		if total > MaxHosts || l.n+total > MaxHosts {
			return fmt.Errorf("more than %d hosts", MaxHosts)
		}
	}
	last := len(lists) - 1
	prefixes := expandPrefixes(texts, lists[:last])
	for _, p := range prefixes {
		for _, r := range lists[last] {
			l.push(hostRange{prefix: p, lo: r.lo, hi: r.hi, width: r.width})
		}
	}
	return nil
}

// expandPrefixes builds every prefix for the last bracket: texts[0] lists[0]
// texts[1] ... lists[k-1] texts[k], with the rightmost bracket varying
// slowest (Slurm expands the last '[' of the prefix in its outer loop).
func expandPrefixes(texts []string, lists [][]numRange) []string {
	k := len(lists)
	if k == 0 {
		return []string{texts[0]}
	}
	var out []string
	for _, r := range lists[k-1] {
		for j := r.lo; ; j++ {
			tail := pad(j, r.width) + texts[k]
			for _, head := range expandPrefixes(texts[:k], lists[:k-1]) {
				out = append(out, head+tail)
			}
			if j == r.hi {
				break
			}
		}
	}
	return out
}

// parseRanges reads the inside of a bracket: a comma list of N or LO-HI.
func parseRanges(s string) ([]numRange, error) {
	var out []numRange
	for _, item := range strings.Split(s, ",") {
		loS, hiS, isRange := strings.Cut(item, "-")
		lo, err := parseNum(loS)
		if err != nil {
			return nil, fmt.Errorf("range %q: %w", item, err)
		}
		hi := lo
		if isRange {
			if hi, err = parseNum(hiS); err != nil {
				return nil, fmt.Errorf("range %q: %w", item, err)
			}
		}
		if lo > hi {
			return nil, fmt.Errorf("range %q: lower bound above upper bound", item)
		}
		if hi-lo >= MaxRange {
			return nil, fmt.Errorf("range %q: more than %d hosts", item, MaxRange)
		}
		out = append(out, numRange{lo: lo, hi: hi, width: len(loS)})
	}
	return out, nil
}

func parseNum(s string) (uint64, error) {
	if s == "" {
		return 0, errors.New("empty number")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%q is not a number", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n, nil
}
