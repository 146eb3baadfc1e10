package issuer

import (
	"fmt"
	"strings"
)

// maxNamesPerOrder is the most names the public ACME CAs put in one
// certificate; a larger request is refused before an order is placed.
const maxNamesPerOrder = 100

// nameLimit returns the most names one certificate may carry under the
// issuer's profile, and who says so. Let's Encrypt's tlsserver and
// shortlived profiles take 25; a directory describes its profiles in prose
// only, so any other profile gets the general limit (and the CA's answer).
func nameLimit(profile string) (int, string) {
	switch strings.ToLower(profile) {
	case "tlsserver", "shortlived":
		return 25, fmt.Sprintf("the issuer's spec.profile %q issues", profile)
	}
	return maxNamesPerOrder, "ACME CAs issue (Let's Encrypt, ZeroSSL and Google Trust Services alike)"
}

// hostNameProblem says why name (lower-case, no trailing dot) cannot be
// ordered, or returns "". CAs accept LDH host names only (RFC 1123 letters,
// digits and hyphens; internationalized names in their xn-- form) of at
// least two labels; refusing the rest here names the fault before a CA
// order is spent on it.
func hostNameProblem(name string) string {
	if len(name) > 253 {
		return fmt.Sprintf("it is %d characters long, the limit is 253", len(name))
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return "it has a single label; a public certificate names a fully qualified domain name such as app.example.com"
	}
	for _, l := range labels {
		switch {
		case l == "":
			return "it has an empty label (two dots in a row, or a leading dot)"
		case len(l) > 63:
			return fmt.Sprintf("its label %q is %d characters long, the limit is 63", l, len(l))
		case l[0] == '-' || l[len(l)-1] == '-':
			return fmt.Sprintf("its label %q starts or ends with a hyphen", l)
		}
		for _, r := range l {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-':
			case r == '_':
				return fmt.Sprintf("its label %q has an underscore, which host names cannot hold", l)
			case r > 127:
				return fmt.Sprintf("its label %q is not ASCII; write internationalized names in their xn-- (punycode) form", l)
			default:
				return fmt.Sprintf("its label %q holds %q; host names hold only letters, digits and hyphens", l, r)
			}
		}
	}
	return ""
}
