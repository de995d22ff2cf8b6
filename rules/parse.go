package rules

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"

	"github.com/BurntSushi/toml"
)

// Load reads the rule file at path and compiles it; see Parse.
func Load(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// os errors already name the file: "open /etc/x.toml: no such file".
		return nil, fmt.Errorf("load rules: %w", err)
	}
	return Parse(path, data)
}

// Parse validates and compiles a rule file. name is used as FILE in error
// messages and as Table.Source. On failure the error joins (errors.Join) one
// *ConfigError per problem, sorted by position; no Table is returned.
func Parse(name string, data []byte) (*Table, error) {
	return parse(name, data, runtime.NumCPU())
}

// parse is Parse with the CPU count injected, so tests get stable output.
func parse(name string, data []byte, cpus int) (*Table, error) {
	// Decoding into a generic map instead of structs lets validation report
	// every type mismatch and unknown key with its full indexed key path;
	// the struct decoder stops at the first mismatch and loses array indexes.
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line, col := pe.Position.Line, pe.Position.Col
			// toml counts a newline as part of the next line when an error
			// sits on it ("[engine" then EOL is reported at 2:8); deriving
			// both from the byte offset keeps them consistent.
			if off := pe.Position.Start; off > 0 && off <= len(data) {
				line, col = (&posIndex{lineStarts: lineStarts(data)}).lineCol(off)
			}
			return nil, &ConfigError{File: name, Line: line, Col: col, Msg: pe.Message}
		}
		return nil, &ConfigError{File: name, Msg: err.Error()}
	}
	p := &parser{file: name, data: data, cpus: cpus}
	t, specs := p.table(doc)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *ConfigError) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
		})
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	t.Source = name
	t.compile(specs)
	return t, nil
}

// parser walks the decoded document, collecting errors instead of stopping.
type parser struct {
	file string
	data []byte
	pos  *posIndex // built on the first error: valid files never need it
	cpus int
	errs []*ConfigError
	// badQueueLen: engine.queue_len was given but invalid (and reported),
	// so [inspect] is not checked against it.
	badQueueLen bool
}

func (p *parser) lookup(key string) (line, col int) {
	if p.pos == nil {
		p.pos = indexPositions(p.data)
	}
	return p.pos.lookup(key)
}

func (p *parser) errorf(key, format string, args ...any) {
	line, col := p.lookup(key)
	p.errs = append(p.errs, &ConfigError{File: p.file, Line: line, Col: col, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// lineOf is used in messages that refer to another place in the file.
func (p *parser) lineOf(key string) int {
	line, _ := p.lookup(key)
	return line
}

// table validates the whole document. The containers are returned for
// compilation rather than compiled here, since only an error-free file is.
func (p *parser) table(doc map[string]any) (*Table, []containerSpec) {
	p.checkKeys(doc, "", &fileKeys)
	t := &Table{}
	t.Engine, t.autoWorkers = p.engine(doc)
	t.Log = p.log(doc)
	t.Metrics = p.metrics(doc)
	t.Status = p.status(doc)
	t.Docker = p.docker(doc)
	t.defaults[Ingress], t.defaults[Egress] = Allow, Allow
	if m, ok := p.section(doc, "", "defaults"); ok {
		p.checkKeys(m, "defaults", &defaultsKeys)
		if a, ok := p.action(m, "defaults", "ingress"); ok {
			t.defaults[Ingress] = a
		}
		if a, ok := p.action(m, "defaults", "egress"); ok {
			t.defaults[Egress] = a
		}
	}
	specs := p.containers(doc, t.defaults)
	t.Inspect = p.inspect(doc, t.Engine, hasL7(specs))
	t.DNS = p.dns(doc, hasNames(specs))
	return t, specs
}
