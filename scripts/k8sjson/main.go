// Command k8sjson writes what the .proto files of Kubernetes' built-in types do not carry and
// kubefabric.k8s needs to render a protobuf-stored object as Go's encoding/json renders the
// typed Go object: for every struct reachable from the kinds kube-apiserver stores, its fields in
// Go order with their json names, omitempty/omitzero, embedding (inlined fields) and Go types
// (pointer, slice, map, []byte ...), and which types have a MarshalJSON of their own.
// The facts come from reflection over the Go types of the module versions in go.mod, so
// scripts/gen_proto.py regenerates them (and CI checks them) with the .proto files.
//
// Output (JSON, one type per line): {"kinds": {apiVersion: {kind: message}},
// "types": {message: {"go": pkg.Name, "fields": [...], "marshaler": bool, "underlying": type}}}
// where message is the protobuf full name (Go package path with "/" and "-" as "."/"_") and a
// field's "type" is "string", "bool", "int", "uint", "float", "bytes", "any", a message name,
// "*T", "[]T", "map[K]T" or "opaque:<Go type>" (a struct of another module, only found inside
// types with their own MarshalJSON).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	apiextv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apiextv1beta1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1beta1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	apiregv1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1"
	apiregv1beta1 "k8s.io/kube-aggregator/pkg/apis/apiregistration/v1beta1"
)

type field struct {
	JSON      string `json:"json,omitempty"` // "" when inlined
	Proto     int    `json:"proto"`          // 0: not in the protobuf encoding
	Type      string `json:"type"`
	OmitEmpty bool   `json:"omitempty,omitempty"`
	OmitZero  bool   `json:"omitzero,omitempty"`
	Inline    bool   `json:"inline,omitempty"`
}

type typeInfo struct {
	Go         string  `json:"go"`
	Fields     []field `json:"fields,omitempty"`
	Marshaler  bool    `json:"marshaler,omitempty"`  // has its own MarshalJSON
	Underlying string  `json:"underlying,omitempty"` // a named slice or map sent as a message
}

var (
	marshalerType = reflect.TypeOf((*json.Marshaler)(nil)).Elem()
	types         = map[string]*typeInfo{}
)

func messageName(t reflect.Type) string {
	pkg := strings.NewReplacer("/", ".", "-", "_").Replace(t.PkgPath())
	return pkg + "." + t.Name()
}

func isProtoMessage(t reflect.Type) bool {
	_, ok := reflect.PointerTo(t).MethodByName("Unmarshal") // generated.pb.go decodes every message type
	return ok
}

func hasMarshaler(t reflect.Type) bool {
	return t.Implements(marshalerType) || reflect.PointerTo(t).Implements(marshalerType)
}

// typeRef names t in the table's notation, walking the structs it reaches.
func typeRef(t reflect.Type) string {
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
		return "bytes"
	}
	if t.Name() != "" && strings.HasPrefix(t.PkgPath(), "k8s.io/") &&
		(t.Kind() == reflect.Struct || isProtoMessage(t)) {
		walk(t)
		return messageName(t)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return "*" + typeRef(t.Elem())
	case reflect.Slice, reflect.Array:
		return "[]" + typeRef(t.Elem())
	case reflect.Map:
		return "map[" + typeRef(t.Key()) + "]" + typeRef(t.Elem())
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "bool"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "int"
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "uint"
	case reflect.Float32, reflect.Float64:
		return "float"
	case reflect.Interface:
		return "any"
	case reflect.Struct:
		if t == reflect.TypeOf(struct{}{}) {
			return "struct{}"
		}
		return "opaque:" + t.String() // inside types with a MarshalJSON of their own (time.Time)
	}
	panic(fmt.Sprintf("unsupported type %v (%v)", t, t.Kind()))
}

// walk records a named Kubernetes type: its fields as encoding/json sees them.
func walk(t reflect.Type) {
	name := messageName(t)
	if _, seen := types[name]; seen {
		return
	}
	info := &typeInfo{Go: t.PkgPath() + "." + t.Name(), Marshaler: hasMarshaler(t)}
	types[name] = info
	if t.Kind() != reflect.Struct {
		info.Underlying = typeRef(reflect.New(t).Elem().Type().Elem()) // element of the named slice/map
		if t.Kind() == reflect.Map {
			info.Underlying = "map[string]" + info.Underlying
		} else {
			info.Underlying = "[]" + info.Underlying
		}
		return
	}
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" || (!sf.IsExported() && !sf.Anonymous) {
			continue
		}
		opts := strings.Split(tag, ",")
		f := field{JSON: opts[0]}
		for _, o := range opts[1:] {
			f.OmitEmpty = f.OmitEmpty || o == "omitempty"
			f.OmitZero = f.OmitZero || o == "omitzero"
		}
		ft := sf.Type
		embeddedStruct := ft.Kind() == reflect.Struct || (ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct)
		// encoding/json inlines an embedded struct without a json name (",inline" means nothing to it)
		if sf.Anonymous && f.JSON == "" && embeddedStruct {
			f.Inline = true
		} else if !sf.IsExported() {
			continue
		} else if f.JSON == "" {
			f.JSON = sf.Name
		}
		if p := sf.Tag.Get("protobuf"); p != "" && p != "-" {
			parts := strings.Split(p, ",")
			if len(parts) < 2 {
				panic(fmt.Sprintf("%s.%s: protobuf tag %q", name, sf.Name, p))
			}
			n, err := strconv.Atoi(parts[1])
			if err != nil {
				panic(fmt.Sprintf("%s.%s: protobuf tag %q", name, sf.Name, p))
			}
			f.Proto = n
		}
		f.Type = typeRef(ft)
		info.Fields = append(info.Fields, f)
	}
}

func main() {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{scheme.AddToScheme, apiextv1.AddToScheme,
		apiextv1beta1.AddToScheme, apiregv1.AddToScheme, apiregv1beta1.AddToScheme} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	kinds := map[string]map[string]string{}
	for gvk, t := range s.AllKnownTypes() {
		if gvk.Version == runtime.APIVersionInternal || !isProtoMessage(t) {
			continue
		}
		apiVersion := gvk.GroupVersion().String()
		if kinds[apiVersion] == nil {
			kinds[apiVersion] = map[string]string{}
		}
		kinds[apiVersion][gvk.Kind] = typeRef(t)
	}

	out := &strings.Builder{}
	out.WriteString("{\"kinds\": {\n")
	versions := sortedKeys(kinds)
	for i, v := range versions {
		b, _ := json.Marshal(kinds[v])
		fmt.Fprintf(out, "  %q: %s%s\n", v, b, comma(i, len(versions)))
	}
	out.WriteString("},\n\"types\": {\n")
	names := sortedKeys(types)
	for i, n := range names {
		b, _ := json.Marshal(types[n])
		fmt.Fprintf(out, "  %q: %s%s\n", n, b, comma(i, len(names)))
	}
	out.WriteString("}}\n")
	if len(os.Args) > 1 {
		if err := os.WriteFile(os.Args[1], []byte(out.String()), 0o644); err != nil {
			panic(err)
		}
		return
	}
	os.Stdout.WriteString(out.String())
}

func comma(i, n int) string {
	if i < n-1 {
		return ","
	}
	return ""
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
