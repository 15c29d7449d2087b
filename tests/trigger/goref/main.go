// Reference renderer for the trigger's Go text/template evaluator: Go's text/template with
// sprig's TxtFuncMap, over data decoded the way Kubernetes decodes objects (integers int64,
// other numbers float64). Reads JSON lines {"template": "...", "data": ...} on stdin and writes
// one JSON line per case: {"output": "..."} or {"error": "parse"|"exec", "message": "..."}.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

type testCase struct {
	Template string          `json:"template"`
	Data     json.RawMessage `json:"data"`
}

type result struct {
	Output  *string `json:"output,omitempty"`
	Error   string  `json:"error,omitempty"`
	Message string  `json:"message,omitempty"`
}

// convert turns json.Number into int64 when it is integral, float64 otherwise, as
// k8s.io/apimachinery/pkg/util/json does for unstructured objects.
func convert(v interface{}) interface{} {
	switch x := v.(type) {
	case map[string]interface{}:
		for k, e := range x {
			x[k] = convert(e)
		}
		return x
	case []interface{}:
		for i, e := range x {
			x[i] = convert(e)
		}
		return x
	case json.Number:
		if i, err := x.Int64(); err == nil {
			return i
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

func render(c testCase) (res result) {
	defer func() {
		if r := recover(); r != nil {
			res = result{Error: "exec", Message: fmt.Sprint(r)}
		}
	}()
	var data interface{}
	dec := json.NewDecoder(bytes.NewReader(c.Data))
	dec.UseNumber()
	if err := dec.Decode(&data); err != nil {
		return result{Error: "data", Message: err.Error()}
	}
	data = convert(data)
	t, err := template.New("t").Funcs(sprig.TxtFuncMap()).Parse(c.Template)
	if err != nil {
		return result{Error: "parse", Message: err.Error()}
	}
	var out strings.Builder
	if err := t.Execute(&out, data); err != nil {
		return result{Error: "exec", Message: err.Error()}
	}
	s := out.String()
	return result{Output: &s}
}

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 64<<20)
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	for in.Scan() {
		var c testCase
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			fmt.Fprintln(os.Stderr, "bad case:", err)
			os.Exit(2)
		}
		if err := enc.Encode(render(c)); err != nil {
			os.Exit(2)
		}
	}
}
