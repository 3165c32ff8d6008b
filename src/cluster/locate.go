package cluster

import (
	"bufio"
	"bytes"
	"strconv"
	"strings"
)

// keyLines maps key paths to the line that sets them. BurntSushi/toml
// keeps key positions private, so validation errors about values that
// decoded fine would otherwise carry no line; this scanner understands
// the plain forms profiles use (tables, arrays of tables, key = value,
// dotted keys) and simply finds nothing for anything fancier.
type keyLines struct {
	// byPath maps "host.address" (no indices) to the lines, in order, that
	// set it; byIndexed maps "host#3.address" (array index of the
	// outermost array of tables) to its line.
	byPath    map[string][]int
	byIndexed map[string]int
}

func scanKeyLines(data []byte) keyLines {
	kl := keyLines{byPath: map[string][]int{}, byIndexed: map[string]int{}}
	arrayCount := map[string]int{}
	table := ""
	index := -1
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		t := strings.TrimSpace(sc.Text())
		switch {
		case t == "" || t[0] == '#':
			continue
		case strings.HasPrefix(t, "[["):
			name := cleanKey(strings.TrimSuffix(strings.TrimSpace(strings.SplitN(t[2:], "]]", 2)[0]), "]"))
			arrayCount[name]++
			table, index = name, arrayCount[name]-1
			kl.add(table, index, line)
		case t[0] == '[':
			name := cleanKey(strings.SplitN(t[1:], "]", 2)[0])
			table = name
			index = -1
			if n, ok := arrayCount[strings.SplitN(name, ".", 2)[0]]; ok {
				index = n - 1
			}
			kl.add(table, index, line)
		default:
			eq := strings.IndexByte(t, '=')
			if eq <= 0 {
				continue
			}
			key := cleanKey(t[:eq])
			if table != "" {
				key = table + "." + key
			}
			kl.add(key, index, line)
		}
	}
	return kl
}

func (kl keyLines) add(path string, index, line int) {
	kl.byPath[path] = append(kl.byPath[path], line)
	if index >= 0 {
		kl.byIndexed[indexedKey(path, index)] = line
	}
}

// indexedKey puts the array index after the first path element:
// ("host.storage.weight", 2) → "host#2.storage.weight".
func indexedKey(path string, index int) string {
	head, rest, _ := strings.Cut(path, ".")
	k := head + "#" + strconv.Itoa(index)
	if rest != "" {
		k += "." + rest
	}
	return k
}

// line finds the line of a key path, preferring the given array index
// (-1: none). Zero means unknown.
func (kl keyLines) line(path string, index int) int {
	if index >= 0 {
		if l, ok := kl.byIndexed[indexedKey(path, index)]; ok {
			return l
		}
		// The key is absent from this element: point at the element itself.
		head, _, _ := strings.Cut(path, ".")
		if l, ok := kl.byIndexed[indexedKey(head, index)]; ok {
			return l
		}
	}
	if ls := kl.byPath[path]; len(ls) > 0 {
		return ls[0]
	}
	return 0
}

// cleanKey normalises `a . "b"` to `a.b`.
func cleanKey(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}
