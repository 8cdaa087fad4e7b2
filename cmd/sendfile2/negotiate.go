package main

import (
	"strings"
)

// weighted is one element of an Accept or Accept-Encoding field: a value
// (lower-cased: a content coding, a media range) and its quality.
type weighted struct {
	value string
	q     int // the qvalue in thousandths: 0 (refused) to 1000
}

// parseWeighted parses the elements of the fields' values (RFC 9110
// section 12.4.2: `value *( OWS ";" OWS param )`, separated by commas).
// Parameters other than q are dropped. An element whose q is not a qvalue
// ("0" to "1", with up to three decimals) is dropped as if absent.
func parseWeighted(values []string) []weighted {
	var out []weighted
	for _, v := range values {
		for elem := range strings.SplitSeq(v, ",") {
			value, params, _ := strings.Cut(elem, ";")
			value = strings.ToLower(strings.Trim(value, " \t"))
			if value == "" {
				continue
			}
			q, ok := 1000, true
			for p := range strings.SplitSeq(params, ";") {
				k, val, _ := strings.Cut(strings.Trim(p, " \t"), "=")
				if strings.EqualFold(strings.TrimRight(k, " \t"), "q") {
					q, ok = parseQ(strings.Trim(val, " \t"))
				}
			}
			if ok {
				out = append(out, weighted{value, q})
			}
		}
	}
	return out
}

// parseQ parses a qvalue: ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] ).
func parseQ(s string) (int, bool) {
	whole, frac, dot := strings.Cut(s, ".")
	if whole != "0" && whole != "1" || dot && len(frac) > 3 || strings.Trim(frac, "0123456789") != "" {
		return 0, false
	}
	q := 0
	for i := range 3 {
		q *= 10
		if i < len(frac) {
			q += int(frac[i] - '0')
		}
	}
	if whole == "1" {
		if q != 0 {
			return 0, false
		}
		q = 1000
	}
	return q, true
}

// quality is the quality that ws gives value: that of its own element, or
// else that of the first of wildcards present; -1 when none names it.
func quality(ws []weighted, value string, wildcards ...string) int {
	for _, w := range ws {
		if w.value == value {
			return w.q
		}
	}
	for _, wc := range wildcards {
		for _, w := range ws {
			if w.value == wc {
				return w.q
			}
		}
	}
	return -1
}
