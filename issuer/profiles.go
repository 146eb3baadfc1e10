package issuer

import (
	"fmt"
	"strings"
)

// profileLimits are what a CA profile takes, where its name is one whose
// limits are published: Let's Encrypt's tlsserver and shortlived profiles
// issue at most 25 names and no Common Name. A directory's profile
// descriptions are prose, so other profiles get the general limits, and
// the CA's own answer for anything else.
type profileLimits struct {
	maxNames   int
	commonName bool
}

func limitsOf(profile string) profileLimits {
	switch strings.ToLower(profile) {
	case "tlsserver", "shortlived":
		return profileLimits{maxNames: 25}
	}
	return profileLimits{maxNames: maxNamesPerOrder, commonName: true}
}

// profileProblem says why a request with names and commonName cannot be
// issued under the issuer's profile, or returns "".
func profileProblem(profile string, names []string, commonName string) string {
	if profile == "" {
		return ""
	}
	lim := limitsOf(profile)
	switch {
	case commonName != "" && !lim.commonName:
		return fmt.Sprintf("the request has the Common Name %q, and the issuer's spec.profile %q issues certificates without one: remove spec.commonName from the Certificate (keep the name in spec.dnsNames), or use an issuer without that profile", commonName, profile)
	case len(names) > lim.maxNames:
		return fmt.Sprintf("the request has %d DNS names, and the issuer's spec.profile %q issues at most %d names per certificate: split the Certificate into several of at most %d names, or use an issuer without that profile", len(names), profile, lim.maxNames, lim.maxNames)
	}
	return ""
}
