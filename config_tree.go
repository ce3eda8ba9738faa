package throttle

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// A configuration document is first read into a tree of yaml.Node, whatever
// its format, and checked against the schema (the fileConfig type) there.
// The tree keeps what the decoders lose: the order and repetition of keys,
// the difference between null and a missing field, and the path of every
// value, so each error can name the field it is about.

// Bounds of a document's tree. A valid document nests five levels deep and
// has a few hundred values, so these only stop hostile input, such as YAML
// aliases that expand exponentially.
const (
	maxTreeDepth = 32
	maxTreeNodes = 100_000
)

// YAML tags of the scalars that the checker distinguishes.
const (
	tagString = "!!str"
	tagInt    = "!!int"
	tagFloat  = "!!float"
	tagBool   = "!!bool"
	tagNull   = "!!null"
	tagMerge  = "!!merge"
)

// Values of the secret struct tag, which marks fields whose contents are API
// keys and must not appear in error messages.
const (
	secretValues = "values"
	secretKeys   = "keys"
)

var (
	fileConfigType = reflect.TypeFor[fileConfig]()
	rateTextType   = reflect.TypeFor[*rateText]()
	filePlanType   = reflect.TypeFor[*filePlan]()
)

// parseYAMLTree parses a YAML document. An empty document returns nil.
func parseYAMLTree(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		if err != nil {
			return nil, err
		}
		return nil, errors.New("yaml: more than one document: a configuration file must contain exactly one")
	}

	root := &doc
	if doc.Kind == yaml.DocumentNode {
		if len(doc.Content) == 0 {
			return nil, nil
		}
		root = doc.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == tagNull {
		return nil, nil
	}
	return root, nil
}

// parseJSONTree parses a JSON document into the same tree as YAML, with the
// line of each value for error messages.
func parseJSONTree(data []byte) (*yaml.Node, error) {
	r := jsonTreeReader{dec: json.NewDecoder(bytes.NewReader(data)), lines: newLineIndex(data)}
	r.dec.UseNumber()
	root, err := r.value(0)
	if err != nil {
		return nil, err
	}
	if _, err := r.dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("json: line %d: unexpected data after the top-level value", r.line())
	}
	return root, nil
}

// jsonTreeReader builds a tree from the tokens of a JSON document.
type jsonTreeReader struct {
	dec   *json.Decoder
	lines lineIndex
}

// line returns the line of the token just read.
func (r *jsonTreeReader) line() int { return r.lines.at(r.dec.InputOffset()) }

// token reads the next token, turning the end of the input into an error.
func (r *jsonTreeReader) token() (json.Token, error) {
	tok, err := r.dec.Token()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("json: unexpected end of input")
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return nil, fmt.Errorf("json: line %d: %w", r.lines.at(syntaxErr.Offset), err)
	}
	if err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return tok, nil
}

// value reads one value and everything it contains.
func (r *jsonTreeReader) value(depth int) (*yaml.Node, error) {
	if depth > maxTreeDepth {
		return nil, fmt.Errorf("json: line %d: values nested more than %d levels deep", r.line(), maxTreeDepth)
	}
	tok, err := r.token()
	if err != nil {
		return nil, err
	}
	line := r.line()

	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return r.object(line, depth)
		}
		return r.array(line, depth)
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tagString, Value: v, Style: yaml.DoubleQuotedStyle, Line: line}, nil
	case json.Number:
		tag := tagInt
		if strings.ContainsAny(string(v), ".eE") {
			tag = tagFloat
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(v), Line: line}, nil
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tagBool, Value: strconv.FormatBool(v), Line: line}, nil
	case nil:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tagNull, Value: "null", Line: line}, nil
	}
	return nil, fmt.Errorf("json: line %d: unexpected token %v", line, tok)
}

// object reads the members of an object whose '{' was just read.
func (r *jsonTreeReader) object(line, depth int) (*yaml.Node, error) {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: line}
	for r.dec.More() {
		tok, err := r.token()
		if err != nil {
			return nil, err
		}
		key, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("json: line %d: object key is not a string", r.line())
		}
		keyNode := &yaml.Node{Kind: yaml.ScalarNode, Tag: tagString, Value: key, Style: yaml.DoubleQuotedStyle, Line: r.line()}
		value, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, keyNode, value)
	}
	if _, err := r.token(); err != nil {
		return nil, err
	}
	return n, nil
}

// array reads the elements of an array whose '[' was just read.
func (r *jsonTreeReader) array(line, depth int) (*yaml.Node, error) {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: line}
	for r.dec.More() {
		value, err := r.value(depth + 1)
		if err != nil {
			return nil, err
		}
		n.Content = append(n.Content, value)
	}
	if _, err := r.token(); err != nil {
		return nil, err
	}
	return n, nil
}

// lineIndex maps byte offsets to line numbers.
type lineIndex []int64

func newLineIndex(data []byte) lineIndex {
	var starts lineIndex
	for i, c := range data {
		if c == '\n' {
			starts = append(starts, int64(i))
		}
	}
	return starts
}

// at returns the 1-based line of the byte at offset. The decoder reports
// the offset just past a token, which is on the token's own line.
func (l lineIndex) at(offset int64) int {
	return sort.Search(len(l), func(i int) bool { return l[i] >= offset-1 }) + 1
}

// treeChecker checks a document's tree against the schema.
type treeChecker struct {
	// nulls holds the paths of rates given as null, which the decoders
	// leave nil, as if the field were missing.
	nulls map[string]bool
	// nodes counts the values checked, aliases expanded.
	nodes int
}

func newTreeChecker() *treeChecker { return &treeChecker{nulls: make(map[string]bool)} }

// check checks node n against the type t at path. secret is the secret tag
// of the field n belongs to.
func (c *treeChecker) check(n *yaml.Node, t reflect.Type, path, secret string, depth int) error {
	c.nodes++
	if c.nodes > maxTreeNodes {
		return fieldError(path, "the document has more than %d values", maxTreeNodes)
	}
	if depth > maxTreeDepth {
		return fieldError(path, "values nested more than %d levels deep", maxTreeDepth)
	}
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return fieldError(path, "alias *%s names no anchor", n.Value)
		}
		return c.check(n.Alias, t, path, secret, depth+1)
	}

	if n.Kind == yaml.ScalarNode && n.ShortTag() == tagNull {
		switch t {
		case rateTextType:
			c.nulls[path] = true
			return nil
		case filePlanType:
			return nil
		}
		return fieldError(path, "null is not allowed here: remove the field to keep its default")
	}
	if t == rateTextType {
		return c.scalar(n, path, secret, `a rate such as "100/hour", or "off"`, tagString)
	}
	if t == filePlanType && n.Kind == yaml.ScalarNode {
		return fieldError(path, "invalid value %q: expected a mapping of the plan's rates, or null to remove the plan", n.Value)
	}

	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Struct:
		return c.checkStruct(n, t, path, depth)
	case reflect.Map:
		return c.checkMap(n, t, path, secret, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return c.kindError(n, path, secret, "a list")
		}
		for i, item := range n.Content {
			if err := c.check(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i), secret, depth+1); err != nil {
				return err
			}
		}
		return nil
	case reflect.String:
		return c.scalar(n, path, secret, "a string", tagString)
	case reflect.Bool:
		return c.scalar(n, path, secret, "true or false", tagBool)
	case reflect.Int:
		if err := c.scalar(n, path, secret, "an integer", tagInt); err != nil {
			return err
		}
		if _, err := strconv.Atoi(n.Value); err != nil {
			return fieldError(path, "invalid value %q: expected a decimal integer", n.Value)
		}
		return nil
	case reflect.Float64:
		if err := c.scalar(n, path, secret, "a number", tagFloat, tagInt); err != nil {
			return err
		}
		if f, err := strconv.ParseFloat(n.Value, 64); err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			return fieldError(path, "invalid value %q: expected a decimal number", n.Value)
		}
		return nil
	}
	// The schema has no other kinds; reaching here is a bug in it.
	return fieldError(path, "no rule for values of type %v", t)
}

// scalar checks that n is a scalar with one of the tags.
func (c *treeChecker) scalar(n *yaml.Node, path, secret, want string, tags ...string) error {
	if n.Kind != yaml.ScalarNode {
		return c.kindError(n, path, secret, want)
	}
	for _, tag := range tags {
		if n.ShortTag() == tag {
			return nil
		}
	}
	return c.kindError(n, path, secret, want)
}

// kindError describes a value of the wrong kind. A secret value is not
// quoted.
func (c *treeChecker) kindError(n *yaml.Node, path, secret, want string) error {
	switch {
	case n.Kind == yaml.MappingNode:
		return fieldError(path, "invalid value: expected %s, not a mapping", want)
	case n.Kind == yaml.SequenceNode:
		return fieldError(path, "invalid value: expected %s, not a list", want)
	case secret == secretValues:
		return fieldError(path, "invalid value: expected %s", want)
	case want == "a string" || strings.HasPrefix(want, "a rate"):
		return fieldError(path, "invalid value %s: expected %s; quote the value to make it a string", n.Value, want)
	}
	return fieldError(path, "invalid value %q: expected %s", n.Value, want)
}

// key returns the text of a mapping key.
func (c *treeChecker) key(k *yaml.Node, path string) (string, error) {
	if k.Kind != yaml.ScalarNode {
		return "", fieldError(path, "the key at line %d is not a plain value", k.Line)
	}
	switch k.ShortTag() {
	case tagMerge:
		return "", fieldError(path, "merge keys (<<) at line %d are not supported: write the fields out", k.Line)
	case tagNull:
		return "", fieldError(path, "the key at line %d is null", k.Line)
	}
	return k.Value, nil
}

// checkStruct checks a mapping of fields against the struct type t.
func (c *treeChecker) checkStruct(n *yaml.Node, t reflect.Type, path string, depth int) error {
	if n.Kind != yaml.MappingNode {
		return c.kindError(n, path, "", "a mapping of fields")
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		name, err := c.key(n.Content[i], path)
		if err != nil {
			return err
		}
		fieldPath := childPath(path, name)
		if line, ok := seen[name]; ok {
			return fieldError(fieldPath, "duplicate key at line %d: first given at line %d", n.Content[i].Line, line)
		}
		seen[name] = n.Content[i].Line

		field, ok := fieldByName(t, name)
		if !ok {
			return fieldError(fieldPath, "unknown field: expected one of %s", strings.Join(fieldNames(t), ", "))
		}
		if err := c.check(n.Content[i+1], field.Type, fieldPath, field.Tag.Get("secret"), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// checkMap checks a mapping against the map type t. With secret set to
// secretKeys the keys are API keys, so paths name them by line instead.
func (c *treeChecker) checkMap(n *yaml.Node, t reflect.Type, path, secret string, depth int) error {
	if n.Kind != yaml.MappingNode {
		return c.kindError(n, path, "", "a mapping")
	}
	seen := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		name, err := c.key(k, path)
		if err != nil {
			return err
		}
		entryPath := childPath(path, name)
		if secret == secretKeys {
			entryPath = fmt.Sprintf("%s[key at line %d]", path, k.Line)
		}
		if line, ok := seen[name]; ok {
			return fieldError(entryPath, "duplicate key at line %d: first given at line %d", k.Line, line)
		}
		seen[name] = k.Line

		if err := c.check(n.Content[i+1], t.Elem(), entryPath, "", depth+1); err != nil {
			return err
		}
	}
	return nil
}

// childPath appends a field name or map key to a path.
func childPath(path, name string) string {
	if path != "" {
		return joinPath(path, name)
	}
	if isPlainKey(name) {
		return name
	}
	return fmt.Sprintf("[%q]", name)
}

// fieldByName returns the field of t whose json tag is name.
func fieldByName(t reflect.Type, name string) (reflect.StructField, bool) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if jsonName(f) == name {
			return f, true
		}
	}
	return reflect.StructField{}, false
}

// fieldNames returns the names of the fields of t, in declaration order.
func fieldNames(t reflect.Type) []string {
	names := make([]string, 0, t.NumField())
	for i := 0; i < t.NumField(); i++ {
		names = append(names, jsonName(t.Field(i)))
	}
	return names
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	return name
}
