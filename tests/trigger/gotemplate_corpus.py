"""The corpus of the Go text/template differential test: templates (each supported function
and syntax form, and cases that must fail) rendered over Kubernetes-shaped objects."""
from __future__ import annotations

DEPLOYMENT = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"name": "web", "namespace": "default", "uid": "8f1c-41",
                 "resourceVersion": "42", "generation": 3,
                 "labels": {"app": "frontend", "tier": "prod", "empty": ""},
                 "annotations": {"note": "a <b> & \"c\"", "unicode": "héllo ☃", "nl": "x\ny"},
                 "creationTimestamp": "2026-01-02T03:04:05Z", "finalizers": None},
    "spec": {"replicas": 3, "paused": False, "ratio": 0.25, "big": 1e21, "small": 1.5e-7,
             "whole": 2.0, "million": 1000000.0, "neg": -7,
             "selector": {"matchLabels": {"app": "frontend"}},
             "template": {"spec": {"containers": [
                 {"name": "app", "image": "nginx:1.27", "ports": [{"containerPort": 80}]},
                 {"name": "sidecar", "image": "envoy:1.30", "args": ["-c", "/etc/envoy.yaml"]}]}}},
    "status": {"availableReplicas": 0, "replicas": 3, "conditions": [
        {"type": "Available", "status": "False"}, {"type": "Progressing", "status": "True"}]},
}
CONFIGMAP = {"apiVersion": "v1", "kind": "ConfigMap",
             "metadata": {"name": "cfg-1", "namespace": "kube-system", "labels": {}},
             "data": {"a": "1", "b": "two", "json": "{\"x\": 1, \"y\": [1, 2.5]}", "csv": "a,b,,c"}}
EMPTY: dict = {}

TEMPLATES = [
    # text, fields, missing keys, nil values
    "plain text", "{{ .metadata.name }}", "{{.metadata.namespace}}/{{.metadata.name}}",
    "{{ .missing }}", "{{ .missing.deeper.still }}", "{{ .metadata.finalizers }}",
    "{{ .metadata.finalizers.x }}", "{{ .metadata.name.x }}", "{{ .spec.replicas }}",
    "{{ .spec.ratio }}", "{{ .spec.big }}", "{{ .spec.small }}", "{{ .spec.whole }}",
    "{{ .spec.million }}", "{{ .spec.neg }}", "{{ .spec.paused }}", "{{ .metadata.labels }}",
    "{{ .spec.template.spec.containers }}", "{{ .status.conditions }}", "{{ . }}",
    "{{ $ }}", "{{ .metadata.annotations.unicode }}", "{{ .data.a }}",
    # literals
    "{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 1e3 }} {{ 0x1F }} {{ 'a' }} {{ true }} {{ \"s\\tq\" }} {{ `raw\\n` }}",
    "{{ 1_000 }}", "{{ nil }}", "{{ 3.0 }}",
    # trim markers and comments
    "a  {{- .metadata.name -}}  b", "a {{- /* note */ -}} b", "{{/* only */}}",
    "x\n{{- if true }}\n  y\n{{- end }}\n",
    # control flow
    "{{ if .spec.replicas }}yes{{ else }}no{{ end }}",
    "{{ if .status.availableReplicas }}yes{{ else }}no{{ end }}",
    "{{ if .missing }}a{{ else if .spec.paused }}b{{ else if .metadata.name }}c{{ end }}",
    "{{ with .spec.selector.matchLabels }}{{ .app }}{{ end }}",
    "{{ with .missing }}x{{ else }}none{{ end }}",
    "{{ with $s := .spec }}{{ $s.replicas }}{{ end }}",
    "{{ range .spec.template.spec.containers }}{{ .name }}={{ .image }};{{ end }}",
    "{{ range $i, $c := .spec.template.spec.containers }}{{ $i }}:{{ $c.name }} {{ end }}",
    "{{ range $k, $v := .metadata.labels }}{{ $k }}={{ $v }},{{ end }}",
    "{{ range .missing }}x{{ else }}empty{{ end }}",
    "{{ range .metadata.finalizers }}x{{ else }}nil{{ end }}",
    "{{ range 3 }}{{ . }}{{ end }}",
    "{{ range $i, $c := .status.conditions }}{{ if eq $c.status \"True\" }}{{ break }}{{ end }}{{ $c.type }}{{ end }}",
    "{{ range .status.conditions }}{{ if eq .status \"False\" }}{{ continue }}{{ end }}{{ .type }}{{ end }}",
    "{{ range .metadata.name }}{{ . }}{{ end }}",
    "{{ range .spec.paused }}{{ . }}{{ end }}",
    "{{ $x := 1 }}{{ if true }}{{ $x = 2 }}{{ end }}{{ $x }}",
    "{{ $n := .metadata.name }}{{ range .status.conditions }}{{ $n }}-{{ .type }} {{ end }}",
    "{{ define \"T\" }}[{{ .name }}]{{ end }}{{ range .spec.template.spec.containers }}{{ template \"T\" . }}{{ end }}",
    "{{ block \"B\" .metadata }}{{ .name }}{{ end }}",
    "{{ template \"nope\" }}",
    # comparisons
    "{{ eq .metadata.name \"web\" }} {{ ne .metadata.name \"web\" }}",
    "{{ eq .spec.replicas 3 }} {{ eq .spec.replicas 3.0 }}", "{{ eq .spec.ratio 0.25 }}",
    "{{ eq .missing .missing }}", "{{ eq .missing nil }}", "{{ eq .metadata.finalizers nil }}",
    "{{ eq .missing 1 }}", "{{ eq .metadata.name 1 }}", "{{ eq .spec.replicas 1 2 3 }}",
    "{{ ne .status.availableReplicas 0 }}", "{{ ne .old.status.availableReplicas .new.status.availableReplicas }}",
    "{{ lt .spec.replicas 5 }} {{ le 3 .spec.replicas }} {{ gt .spec.ratio 0.1 }} {{ ge \"b\" \"a\" }}",
    "{{ lt .missing 1 }}", "{{ lt true false }}", "{{ eq .metadata.labels .metadata.labels }}",
    "{{ and .spec.replicas .metadata.name }} {{ and 0 .x }} {{ or .missing \"dflt\" }} {{ or 0 \"\" }}",
    "{{ not .spec.paused }} {{ not .metadata.name }}",
    "{{ and }}", "{{ eq .metadata.name }}",
    # builtin functions
    "{{ len .metadata.labels }} {{ len .metadata.name }} {{ len .spec.template.spec.containers }}",
    "{{ len .spec.replicas }}", "{{ len .missing }}", "{{ len \"héllo\" }}",
    "{{ index .metadata.labels \"app\" }}", "{{ index .metadata.labels \"nope\" }}",
    "{{ index .spec.template.spec.containers 1 \"name\" }}", "{{ index .spec.template.spec.containers 5 }}",
    "{{ index .missing \"x\" }}", "{{ index .metadata.name 0 }}", "{{ index .metadata.labels 1 }}",
    "{{ slice .metadata.name 1 }} {{ slice .metadata.name 0 2 }}",
    "{{ slice .spec.template.spec.containers 1 }}",
    "{{ print .metadata.name 1 2 \"x\" 3 }}", "{{ print .missing }}", "{{ println 1 \"a\" }}",
    "{{ printf \"%s/%s\" .metadata.namespace .metadata.name }}", "{{ printf \"%d\" .spec.replicas }}",
    "{{ printf \"%v %v %v\" .spec.ratio .metadata.labels .spec.paused }}",
    "{{ printf \"%q\" .metadata.name }}", "{{ printf \"%05d|%-4d|%x|%X|%o\" 42 7 255 255 8 }}",
    "{{ printf \"%.2f %f %e\" .spec.ratio .spec.ratio 1234.5 }}", "{{ printf \"%t\" true }}",
    "{{ printf \"%d\" .metadata.name }}", "{{ printf \"%s\" }}", "{{ printf \"a\" 1 }}",
    "{{ printf \"%T %T %T %T\" .spec.replicas 1 .metadata .spec.template.spec.containers }}",
    "{{ printf \"%8s|%-8s|\" \"ab\" \"cd\" }}", "{{ printf \"%%\" }}",
    "{{ html .metadata.annotations.note }}", "{{ js .metadata.annotations.note }}",
    "{{ urlquery \"a b&c=d/é\" }}",
    # pipelines and parentheses
    "{{ .metadata.name | printf \"%s!\" }}", "{{ (index .metadata.labels \"app\") }}",
    "{{ (.spec).replicas }}", "{{ (index .spec.template.spec.containers 0).image }}",
    # sprig: defaults
    "{{ default \"x\" .missing }} {{ default \"x\" .metadata.name }} {{ default \"x\" \"\" }} {{ default 5 0 }}",
    "{{ .missing | default \"piped\" }}", "{{ empty .missing }} {{ empty .metadata.labels.empty }} {{ empty .spec }}",
    "{{ coalesce .missing \"\" 0 \"third\" }}", "{{ ternary \"y\" \"n\" .spec.paused }}",
    "{{ ternary \"y\" \"n\" .spec.replicas }}",
    # sprig: json
    "{{ toJson . }}", "{{ toJson .metadata }}", "{{ toJson .spec }}", "{{ toPrettyJson .metadata.labels }}",
    "{{ toRawJson .metadata.annotations }}", "{{ toJson .missing }}", "{{ toJson \"<x>\" }}",
    "{{ (fromJson .data.json).y }}", "{{ toJson (fromJson .data.json) }}", "{{ fromJson \"nope\" }}",
    # sprig: strings
    "{{ upper .metadata.name }} {{ lower \"ABC\" }} {{ title \"hello wide world\" }}",
    "{{ upper .spec.replicas }}", "{{ upper .missing }}",
    "{{ trim \"  x  \" }}|{{ trimAll \"-\" \"--x--\" }}|{{ trimPrefix \"we\" .metadata.name }}|{{ trimSuffix \"b\" .metadata.name }}",
    "{{ contains \"eb\" .metadata.name }} {{ hasPrefix \"w\" .metadata.name }} {{ hasSuffix \"x\" .metadata.name }}",
    "{{ replace \"e\" \"E\" .metadata.name }}", "{{ repeat 3 \"ab\" }}",
    "{{ substr 1 3 .metadata.name }} {{ substr 0 100 \"abc\" }}", "{{ trunc 2 .metadata.name }} {{ trunc -2 \"abcd\" }}",
    "{{ abbrev 5 \"hello world\" }}", "{{ indent 2 .metadata.annotations.nl }}", "{{ nindent 2 \"a\" }}",
    "{{ nospace \" a b\\tc \" }}", "{{ quote .metadata.name 1 .missing }}", "{{ squote .metadata.name }}",
    "{{ cat .metadata.name 1 .missing \"x\" }}", "{{ toString .spec.replicas }} {{ toString .spec.ratio }}",
    "{{ splitList \",\" .data.csv }}", "{{ (split \",\" .data.csv)._1 }}", "{{ join \"-\" (list 1 \"a\" .missing 2.5) }}",
    "{{ join \",\" .missing }}", "{{ quote \"tab\\there\" }}",
    # sprig: encodings
    "{{ b64enc .metadata.name }} {{ b64dec \"d2Vi\" }} {{ b64dec \"!!\" }}",
    "{{ sha256sum .metadata.name }} {{ sha1sum \"x\" }}",
    "{{ b64dec \"abc\" }}|{{ b64dec \"ab=c\" }}|{{ b64dec \"YQ\" }}|{{ b64dec \"YQ==\" }}",
    "{{ slice (list 1 2 3) 1 }} {{ slice (list 1 2 3) 0 2 }} {{ slice (list 1 2 3) }}",
    # sprig: lists
    "{{ list 1 \"a\" .spec.ratio }}", "{{ first .spec.template.spec.containers | toJson }}",
    "{{ last (list 1 2 3) }} {{ rest (list 1 2 3) }} {{ initial (list 1 2 3) }}", "{{ first (list) }}",
    "{{ first .missing }}", "{{ has \"a\" (list \"a\" \"b\") }} {{ has 1 (list 1 2) }} {{ has 3 .missing }}",
    "{{ uniq (list 1 1 \"a\" \"a\" 2) }}", "{{ compact (list 1 0 \"\" \"x\") }}",
    "{{ append (list 1) 2 }} {{ prepend (list 1) 0 }} {{ concat (list 1) (list 2 3) }}",
    "{{ until 3 }}", "{{ sortAlpha (list \"b\" \"a\" \"c\") }}", "{{ keys .metadata.labels | sortAlpha }}",
    # sprig: dicts
    "{{ $d := dict \"a\" 1 \"b\" \"two\" }}{{ $d.a }} {{ get $d \"b\" }} {{ get $d \"zz\" }} {{ hasKey $d \"a\" }}",
    "{{ toJson (dict \"k\" .metadata.name \"odd\") }}", "{{ pluck \"name\" .metadata .spec }}",
    "{{ toJson (pick .metadata \"name\" \"namespace\") }}", "{{ toJson (omit .metadata.labels \"app\") }}",
    "{{ $d := dict }}{{ $_ := set $d \"x\" 1 }}{{ toJson $d }}", "{{ get .missing \"a\" }}",
    # sprig: numbers
    "{{ add 1 2 .spec.replicas }} {{ add1 .spec.replicas }} {{ sub 10 .spec.replicas }}",
    "{{ mul 2 .spec.replicas 4 }} {{ div 7 2 }} {{ div -7 2 }} {{ mod 7 3 }} {{ mod -7 3 }}",
    "{{ max 1 .spec.replicas 2 }} {{ min 1 .spec.neg }}", "{{ div 1 0 }}",
    "{{ int \"42\" }} {{ int64 .spec.ratio }} {{ float64 \"1.5\" }} {{ int .spec.whole }} {{ atoi \"12\" }}",
    "{{ add \"3\" 4.9 }}", "{{ typeOf (int 3) }} {{ typeOf (add 1 2) }}",
    # sprig: regular expressions
    "{{ regexMatch \"^w.b$\" .metadata.name }} {{ regexMatch \"[\" \"x\" }}",
    "{{ regexFind \"[0-9]+\" \"abc123def45\" }}", "{{ regexFindAll \"[0-9]+\" \"a1b22c333\" -1 }}",
    "{{ regexReplaceAll \"(e)(b)\" .metadata.name \"${2}$1\" }}", "{{ regexReplaceAll \"a(x*)b\" \"-ab-axxb-\" \"$1W\" }}",
    "{{ regexReplaceAllLiteral \"e\" .metadata.name \"$1\" }}", "{{ regexSplit \",\" .data.csv -1 }}",
    # sprig: types
    "{{ kindOf .metadata }} {{ kindOf .spec.replicas }} {{ kindOf .missing }} {{ kindOf .spec.template.spec.containers }}",
    "{{ typeOf .metadata }} {{ typeOf .spec.ratio }} {{ typeOf .missing }} {{ typeOf 1 }}",
    "{{ kindIs \"map\" .metadata }} {{ typeIs \"string\" .metadata.name }} {{ deepEqual .metadata.labels .spec.selector.matchLabels }}",
    # HariKube's documented examples
    "https://example.com/hook/{{ .metadata.name }}", "{{ toJson . }}\n", "/hook/{{ .metadata.name }}",
    # templates that must fail to parse
    "{{ .metadata.name", "{{ nosuchfunc 1 }}", "{{ if true }}x", "{{ end }}", "{{ else }}",
    "{{ $undefined }}", "{{ range $a, $b, $c := . }}{{ end }}", "{{ break }}", "{{ 1 | 2 }}",
    "{{ (1 }}", "{{ \"unterminated }}", "{{ .a.  b }}", "{{ 08 }}", "{{ 1x }}",
    # templates that must fail to execute
    "{{ .metadata.name.first }}", "{{ .spec.replicas.x }}", "{{ index .spec 1 }}", "{{ fail \"boom\" }}",
    "{{ nil | print }}", "{{ .metadata.name 1 }}", "{{ repeat .spec.replicas \"a\" }}",
]

DATA = {"deployment": DEPLOYMENT, "configmap": CONFIGMAP, "empty": EMPTY}


def cases():
    """(id, template, data) for every template over every data object."""
    for i, t in enumerate(TEMPLATES):
        for name, data in DATA.items():
            yield f"{i:03d}-{name}", t, data
